#include "crc32.h"

/* Slicing-by-1 table: checkpoints are read once per load, and this runs at
 * several hundred MB/s, well under the cost of reading the file. */
static uint32_t TABLE[256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        TABLE[i] = c;
    }
    table_ready = 1;
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t len) {
    if (!table_ready) build_table();
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = TABLE[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}
