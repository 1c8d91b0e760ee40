/* Key-value echo over document "kv". Input "key=value" stores value under key;
 * input "key" alone reads it. Either way the output is the value read back
 * (read-your-own-writes: a value set here is visible before it commits). */
#include "edgestate.h"

static char in[4096], value[4096];

ES_EXPORT("handle") int32_t handle(void) {
    int32_t n = es_input_read(in, sizeof in);
    if (n < 0 || n > (int32_t)sizeof in) return 1;
    int32_t split = 0;
    while (split < n && in[split] != '=') split++;
    int32_t doc = es_doc_open(ES_STR("kv"));
    if (doc < 0) return 2;
    if (split < n && es_kv_set(doc, in, (uint32_t)split, in + split + 1, (uint32_t)(n - split - 1)) < 0)
        return 3;
    int32_t len = es_kv_get(doc, in, (uint32_t)split, value, sizeof value);
    if (len == ES_ERR_NOT_FOUND) return 5;
    if (len < 0 || len > (int32_t)sizeof value) return 4;
    es_output_write(value, (uint32_t)len);
    return 0;
}
