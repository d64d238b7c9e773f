/*
 * zlib inflation for PNG text chunks (zTXt, compressed iTXt) read without
 * libpng, so that reading an image's metadata never decodes its pixels.
 */
#include "CImageCodecs.h"
#include "codec_common.h"

#include <stdlib.h>
#include <zlib.h>

int nest_inflate_text(const uint8_t *data, size_t length, size_t max_output,
                      nest_buffer *out, char *message, size_t message_capacity) {
    if (out == NULL || (data == NULL && length > 0)) return NEST_IMG_BAD_ARGUMENT;
    out->data = NULL;
    out->length = 0;
    z_stream stream = {0};
    if (inflateInit(&stream) != Z_OK) {
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    nest_growable buffer = {0};
    uint8_t chunk[16384];
    stream.next_in = (Bytef *)data;
    stream.avail_in = (uInt)(length > UINT32_MAX ? UINT32_MAX : length);
    int result = Z_OK, status = NEST_IMG_OK;
    while (result != Z_STREAM_END) {
        stream.next_out = chunk;
        stream.avail_out = sizeof chunk;
        result = inflate(&stream, Z_NO_FLUSH);
        if (result != Z_OK && result != Z_STREAM_END) {
            status = result == Z_BUF_ERROR ? NEST_IMG_TRUNCATED : NEST_IMG_CORRUPT;
            nest_set_message(message, message_capacity, "%s",
                             result == Z_BUF_ERROR ? "compressed text ends early" : "compressed text is damaged");
            break;
        }
        size_t produced = sizeof chunk - stream.avail_out;
        /* A tiny chunk can inflate to gigabytes; stop at the caller's bound. */
        if (buffer.length + produced > max_output) {
            status = NEST_IMG_TOO_LARGE;
            nest_set_message(message, message_capacity, "text chunk inflates past %zu bytes", max_output);
            break;
        }
        if (produced > 0 && !nest_growable_append(&buffer, chunk, produced)) {
            status = NEST_IMG_NO_MEMORY;
            nest_set_message(message, message_capacity, "out of memory");
            break;
        }
    }
    inflateEnd(&stream);
    if (status != NEST_IMG_OK) {
        free(buffer.data);
        return status;
    }
    out->data = buffer.data;
    out->length = buffer.length;
    return NEST_IMG_OK;
}
