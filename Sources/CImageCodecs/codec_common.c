#include "codec_common.h"
#include "CImageCodecs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nest_set_message(char *message, size_t capacity, const char *format, ...) {
    if (message == NULL || capacity == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, capacity, format, args);
    va_end(args);
    for (char *p = message; *p; p++) {
        if (*p == '\n' || *p == '\r') *p = ' ';
    }
}

size_t nest_checked_product(size_t a, size_t b, size_t c) {
    size_t ab, abc;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return 0;
    return abc;
}

int nest_dimensions_fit(uint32_t width, uint32_t height, uint32_t max_side, uint64_t max_pixels,
                        char *text, size_t capacity) {
    if (width > max_side || height > max_side) {
        nest_set_message(text, capacity, "image is %ux%u pixels; the limit is %u per side",
                         (unsigned)width, (unsigned)height, (unsigned)max_side);
        return 0;
    }
    uint64_t pixels = (uint64_t)width * (uint64_t)height;
    if (pixels > max_pixels) {
        nest_set_message(text, capacity, "image is %ux%u pixels (%llu); the limit is %llu pixels",
                         (unsigned)width, (unsigned)height, (unsigned long long)pixels,
                         (unsigned long long)max_pixels);
        return 0;
    }
    return 1;
}

int nest_growable_append(nest_growable *buffer, const void *bytes, size_t count) {
    if (count > SIZE_MAX - buffer->length) return 0;
    size_t needed = buffer->length + count;
    if (needed > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 4096;
        while (capacity < needed) {
            capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
        }
        uint8_t *grown = realloc(buffer->data, capacity);
        if (grown == NULL) return 0;
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, count);
    buffer->length = needed;
    return 1;
}

void nest_image_free(nest_decoded_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    for (uint32_t i = 0; i < image->text_count && image->texts; i++) {
        free(image->texts[i].key);
        free(image->texts[i].value);
    }
    free(image->texts);
    memset(image, 0, sizeof *image);
}

void nest_buffer_free(nest_buffer *buffer) {
    if (buffer == NULL) return;
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = 0;
}
