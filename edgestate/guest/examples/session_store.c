/* Session store over document "sessions". Input: a session id. Per request it
 * reads the session's data and preferences, counts the hit, stamps
 * last-seen and appends a marker to the data (kept to 256 bytes); the output
 * is "hits=N bytes=M". */
#include "edgestate.h"

static char id[64], k[96], data[300], prefs[256];

/* id + suffix in k; returns the key's length (ids are at most 64 bytes). */
static uint32_t key(uint32_t id_len, const char *suffix) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < id_len; i++) k[n++] = id[i];
    while (*suffix) k[n++] = *suffix++;
    return n;
}

static uint32_t append(char *out, uint32_t n, const char *text) {
    while (*text) out[n++] = *text++;
    return n;
}

ES_EXPORT("handle") int32_t handle(void) {
    int32_t id_len = es_input_read(id, sizeof id);
    if (id_len <= 0 || id_len > (int32_t)sizeof id) return 1;
    int32_t doc = es_doc_open(ES_STR("sessions"));
    if (doc < 0) return 2;
    uint32_t n = (uint32_t)id_len;

    int32_t data_len = es_kv_get(doc, k, key(n, ":data"), data, sizeof data);
    if (data_len == ES_ERR_NOT_FOUND) data_len = 0;
    if (data_len < 0 || data_len > (int32_t)sizeof data) return 3;
    int32_t prefs_len = es_kv_get(doc, k, key(n, ":prefs"), prefs, sizeof prefs);
    if (prefs_len < ES_ERR_NOT_FOUND || prefs_len > (int32_t)sizeof prefs) return 3;

    int64_t hits;
    if (es_kv_incr(doc, k, key(n, ":hits"), 1, &hits) < 0) return 4;
    int64_t now = es_now_ms();
    if (es_kv_set(doc, k, key(n, ":last_seen"), &now, sizeof now) < 0) return 5;
    if (data_len >= 256) data_len = 0;
    data[data_len++] = '.';
    if (es_kv_set(doc, k, key(n, ":data"), data, (uint32_t)data_len) < 0) return 5;

    char out[64];
    uint32_t len = append(out, 0, "hits=");
    len += es_format_i64(hits, out + len);
    len = append(out, len, " bytes=");
    len += es_format_i64(data_len, out + len);
    es_output_write(out, len);
    return 0;
}
