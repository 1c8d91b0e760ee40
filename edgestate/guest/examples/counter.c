/* Counter: adds 1 to the counter named by the input (default "visits") in
 * document "counters" and outputs its new total in decimal. */
#include "edgestate.h"

ES_EXPORT("handle") int32_t handle(void) {
    char key[128];
    int32_t n = es_input_read(key, sizeof key);
    if (n < 0 || n > (int32_t)sizeof key) return 1;
    const char *k = key;
    if (n == 0) {
        k = "visits";
        n = (int32_t)es_strlen(k);
    }
    int32_t doc = es_doc_open(ES_STR("counters"));
    if (doc < 0) return 2;
    int64_t total;
    if (es_kv_incr(doc, k, (uint32_t)n, 1, &total) < 0) return 3;
    char out[24];
    es_output_write(out, es_format_i64(total, out));
    return 0;
}
