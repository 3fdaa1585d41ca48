/* CRC-32 (IEEE 802.3, as zlib's crc32), for checkpoint integrity. */
#ifndef TF_CRC32_H
#define TF_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over more bytes; start with crc = 0. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
