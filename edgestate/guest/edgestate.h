/* edgestate guest SDK for C: the host ABI (import module "edgestate").
 *
 * All pointers and lengths are i32 offsets into the module's exported
 * `memory`. Functions return 0 or a length on success and a negative
 * ES_ERR_* code on failure; a pointer or length outside memory traps the
 * invocation. The ABI is specified in schemas/host-abi.json and explained,
 * with an example, in docs/modules.md.
 *
 * Write the entry with ES_EXPORT so it is exported whatever the linker flags
 * (a module without its entry builds and signs but is refused at load):
 *
 *     ES_EXPORT("handle") int32_t handle(void) {
 *         int32_t doc = es_doc_open(ES_STR("counters"));
 *         ...
 *     }
 *
 * Build with `edgestate build`, or by hand:
 *     python -m ziglang cc --target=wasm32-freestanding -nostdlib -Os \
 *         -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 -o mod.wasm mod.c
 * The stack size matters: the default 1 MiB stack makes the module start with
 * 17 memory pages, more than most manifests' memory_pages allow.
 */
#ifndef EDGESTATE_H
#define EDGESTATE_H

#include <stdint.h>

#define ES_ERR_NOT_FOUND        (-1)  /* key absent */
#define ES_ERR_ACCESS_DENIED    (-2)  /* document not granted (or not for writing) */
#define ES_ERR_UNKNOWN_DOCUMENT (-3)  /* granted, but not created in this store */
#define ES_ERR_BAD_HANDLE       (-4)  /* handle not returned by es_doc_open */
#define ES_ERR_INVALID_KEY      (-5)  /* key empty, too long or not UTF-8 */
#define ES_ERR_VALUE_TOO_LARGE  (-6)  /* value over the store's limit, or counter overflow */
#define ES_ERR_WRONG_TYPE       (-7)  /* incr on a plain value */
#define ES_ERR_INVALID_CURSOR   (-8)  /* scan cursor not issued by the host */
#define ES_ERR_LIMIT_EXCEEDED   (-9)  /* too many open documents or staged writes */
#define ES_ERR_INVALID_ARGUMENT (-10) /* e.g. a document name breaking the name rule */

#define ES_IMPORT(name) __attribute__((import_module("edgestate"), import_name(name)))
/* Export a function under `name` (the manifest's entry, "handle" by default). */
#define ES_EXPORT(name) __attribute__((export_name(name), visibility("default")))
/* A string literal as the (pointer, length) pair every call takes: ES_STR("kv"). */
#define ES_STR(literal) (literal), (uint32_t)(sizeof(literal) - 1)

/* Handle of a document the manifest grants; reuse it for the whole invocation.
 * A name breaking the name rule (1-64 of A-Z a-z 0-9 _ . -, see host-abi.json)
 * is ES_ERR_INVALID_ARGUMENT; one not granted, ES_ERR_ACCESS_DENIED. */
ES_IMPORT("doc_open") int32_t es_doc_open(const char *name, uint32_t name_len);
/* Value length; the value is copied only if it fits in out_cap (else retry
 * with a larger buffer). ES_ERR_NOT_FOUND when absent. */
ES_IMPORT("kv_get") int32_t es_kv_get(int32_t doc, const char *key, uint32_t key_len,
                                      void *out, uint32_t out_cap);
ES_IMPORT("kv_set") int32_t es_kv_set(int32_t doc, const char *key, uint32_t key_len,
                                      const void *value, uint32_t value_len);
ES_IMPORT("kv_delete") int32_t es_kv_delete(int32_t doc, const char *key, uint32_t key_len);
/* Status; the counter's new total is written to *out (little-endian i64). */
ES_IMPORT("kv_incr") int32_t es_kv_incr(int32_t doc, const char *key, uint32_t key_len,
                                        int64_t delta, int64_t *out);
/* One page of keys under prefix, msgpack [keys, next_cursor | nil]; pass the
 * returned cursor back (cursor_len 0 for the first page). Length-or-retry. */
ES_IMPORT("kv_scan") int32_t es_kv_scan(int32_t doc, const char *prefix, uint32_t prefix_len,
                                        const void *cursor, uint32_t cursor_len,
                                        void *out, uint32_t out_cap);
ES_IMPORT("input_len") int32_t es_input_len(void);
/* Input length; copied only if it fits. */
ES_IMPORT("input_read") int32_t es_input_read(void *out, uint32_t out_cap);
/* Append to the output; past the manifest's max_output_bytes the invocation traps. */
ES_IMPORT("output_write") int32_t es_output_write(const void *data, uint32_t len);
/* level: 0 trace, 1 debug, 2 info, 3 warn, 4 error. */
ES_IMPORT("log") void es_log(int32_t level, const char *message, uint32_t len);
/* Wall-clock milliseconds since the Unix epoch. */
ES_IMPORT("now_ms") int64_t es_now_ms(void);

/* Length of a NUL-terminated string (no libc needed): es_doc_open(s, es_strlen(s)). */
static inline uint32_t es_strlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Decimal text of n in buf (20 bytes always suffice); returns the length. */
static inline uint32_t es_format_i64(int64_t n, char *buf) {
    char tmp[20];
    uint32_t i = sizeof tmp, len = 0;
    uint64_t v = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (n < 0) buf[len++] = '-';
    while (i < sizeof tmp) buf[len++] = tmp[i++];
    return len;
}

#endif /* EDGESTATE_H */
