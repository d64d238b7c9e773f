/* Private helpers shared by the PNG and JPEG codecs (not part of the module API). */
#ifndef NEST_CODEC_COMMON_H
#define NEST_CODEC_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* printf into the caller's message buffer, truncating safely and folding any
 * newlines to spaces: the Swift side promises one-line error messages. */
void nest_set_message(char *message, size_t capacity, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* a * b * c, or 0 when the product overflows size_t. Dimensions come from
 * untrusted headers, so every buffer size goes through this. */
size_t nest_checked_product(size_t a, size_t b, size_t c);

/* Whether a header's dimensions fit the caller's limits (max_side per side,
 * max_pixels in all); when not, writes why into text and returns 0. Checked
 * before any pixel buffer exists, so a small file cannot claim gigabytes. */
int nest_dimensions_fit(uint32_t width, uint32_t height, uint32_t max_side, uint64_t max_pixels,
                        char *text, size_t capacity);

/* A byte buffer that grows geometrically; encoders write into it. */
typedef struct {
    uint8_t *data;
    size_t length;
    size_t capacity;
} nest_growable;

/* Appends count bytes; returns 0 (leaving the buffer intact) when out of memory. */
int nest_growable_append(nest_growable *buffer, const void *bytes, size_t count);

#endif
