/*
 * PNG decoding from memory with libpng 1.6.
 *
 * Error handling: libpng calls our error callback for fatal problems, and that
 * callback longjmps back to nest_png_decode. All state that must survive the
 * jump (allocations, status, message) lives in a png_reader struct reached
 * through a pointer, and the work that can fail runs in a separate function,
 * so the function holding the setjmp never keeps changed values in registers.
 */
#include "CImageCodecs.h"
#include "codec_common.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jmp_buf jump;
    const uint8_t *data;
    size_t length;
    size_t offset;
    uint32_t max_side;
    uint64_t max_pixels;
    int status;            /* reported when a jump happens */
    char *message;
    size_t message_capacity;
    /* Built up while decoding; freed on failure, handed out on success. */
    nest_decoded_image result;
    png_bytep *rows;
} png_reader;

/* Our own failures (size limits, allocation) use the same exit as libpng's. */
static void reader_fail(png_reader *reader, int status, const char *text) {
    reader->status = status;
    nest_set_message(reader->message, reader->message_capacity, "%s", text);
    longjmp(reader->jump, 1);
}

static void on_png_error(png_structp png, png_const_charp text) {
    png_reader *reader = png_get_error_ptr(png);
    nest_set_message(reader->message, reader->message_capacity, "%s", text);
    longjmp(reader->jump, 1);
}

/* Warnings (an sRGB profile libpng dislikes, a bad CRC on an ancillary chunk
 * that it then skips) do not change the pixels, so they are not failures. */
static void on_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void read_from_memory(png_structp png, png_bytep destination, size_t count) {
    png_reader *reader = png_get_io_ptr(png);
    if (count > reader->length - reader->offset) {
        /* A truncated file is the most common corruption; name it as such. */
        reader_fail(reader, NEST_IMG_TRUNCATED, "unexpected end of data");
    }
    memcpy(destination, reader->data + reader->offset, count);
    reader->offset += count;
}

static char *copy_bytes(const char *bytes, size_t length) {
    char *copy = malloc(length + 1);
    if (copy == NULL) return NULL;
    if (length > 0) memcpy(copy, bytes, length);
    copy[length] = '\0';
    return copy;
}

/* Copies libpng's text chunks out before png_destroy_read_struct frees them. */
static void collect_texts(png_reader *reader, png_structp png, png_infop info) {
    png_textp texts = NULL;
    int count = png_get_text(png, info, &texts, NULL);
    if (count <= 0) return;
    reader->result.texts = calloc((size_t)count, sizeof(nest_text_entry));
    if (reader->result.texts == NULL) reader_fail(reader, NEST_IMG_NO_MEMORY, "out of memory");
    reader->result.text_count = (uint32_t)count;
    for (int i = 0; i < count; i++) {
        /* iTXt (compression >= PNG_ITXT_COMPRESSION_NONE) carries UTF-8 and
         * reports its size in itxt_length; tEXt/zTXt are Latin-1. */
        int utf8 = texts[i].compression >= PNG_ITXT_COMPRESSION_NONE;
        size_t length = utf8 ? texts[i].itxt_length : texts[i].text_length;
        const char *value = texts[i].text ? texts[i].text : "";
        if (texts[i].text == NULL) length = 0;
        nest_text_entry *entry = &reader->result.texts[i];
        entry->key = copy_bytes(texts[i].key, strlen(texts[i].key));
        entry->value = copy_bytes(value, length);
        entry->value_len = length;
        entry->is_utf8 = utf8;
        if (entry->key == NULL || entry->value == NULL) {
            reader_fail(reader, NEST_IMG_NO_MEMORY, "out of memory");
        }
    }
}

/* Asks libpng to turn every PNG layout into 8-bit RGB or RGBA. */
static void request_rgb8(png_structp png, png_infop info, int color_type, int bit_depth) {
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* A tRNS chunk (palette alphas or one transparent color) becomes a real
     * alpha channel, kept separate from the color. */
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (bit_depth == 16) {
#ifdef PNG_READ_SCALE_16_TO_8_SUPPORTED
        png_set_scale_16(png); /* rounds correctly, unlike dropping the low byte */
#else
        png_set_strip_16(png);
#endif
    }
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
    /* Makes png_read_image run all seven Adam7 passes for interlaced files. */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static void decode_png(png_reader *reader, png_structp png, png_infop info, int want_text) {
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    char text[160];
    if (!nest_dimensions_fit(width, height, reader->max_side, reader->max_pixels, text, sizeof text)) {
        reader_fail(reader, NEST_IMG_TOO_LARGE, text);
    }

    request_rgb8(png, info, color_type, bit_depth);
    size_t channels = png_get_channels(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if ((channels != 3 && channels != 4) || row_bytes != nest_checked_product(width, channels, 1)) {
        reader_fail(reader, NEST_IMG_UNSUPPORTED, "unexpected PNG layout after conversion");
    }
    size_t total = nest_checked_product(width, height, channels);
    if (total == 0) reader_fail(reader, NEST_IMG_TOO_LARGE, "image size overflows memory");

    reader->result.width = width;
    reader->result.height = height;
    reader->result.channels = (uint32_t)channels;
    reader->result.pixels = malloc(total);
    reader->rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (reader->result.pixels == NULL || reader->rows == NULL) {
        reader_fail(reader, NEST_IMG_NO_MEMORY, "out of memory for pixels");
    }
    for (png_uint_32 y = 0; y < height; y++) {
        reader->rows[y] = reader->result.pixels + (size_t)y * row_bytes;
    }

    png_read_image(png, reader->rows);
    /* Reading through IEND catches truncation after the image data and picks
     * up text chunks that writers place after IDAT. */
    png_read_end(png, info);
    if (want_text) collect_texts(reader, png, info);
}

/* Whether every chunk the data holds ends inside it. A chunk header may claim
 * up to 2 GB; libpng allocates a text chunk's buffer before reading it, so a
 * 1 KB file could cost a 2 GB allocation and seconds before "truncated". */
static int chunks_fit(const uint8_t *data, size_t length) {
    size_t offset = 8;
    while (offset + 8 <= length) {
        size_t chunk = ((size_t)data[offset] << 24) | ((size_t)data[offset + 1] << 16)
                     | ((size_t)data[offset + 2] << 8) | (size_t)data[offset + 3];
        if (chunk > length - offset - 8 || length - offset - 8 - chunk < 4) return 0;
        if (memcmp(data + offset + 4, "IEND", 4) == 0) return 1;
        offset += 12 + chunk;
    }
    return 1; /* ends between chunks: libpng reports what is missing */
}

int nest_png_decode(const uint8_t *data, size_t length, uint32_t max_side, uint64_t max_pixels, int want_text,
                    nest_decoded_image *image, char *message, size_t message_capacity) {
    if (image == NULL || (data == NULL && length > 0)) return NEST_IMG_BAD_ARGUMENT;
    memset(image, 0, sizeof *image);
    if (length >= 8 && !chunks_fit(data, length)) {
        nest_set_message(message, message_capacity, "a chunk ends past the end of data");
        return NEST_IMG_TRUNCATED;
    }

    png_reader reader;
    memset(&reader, 0, sizeof reader);
    reader.data = data;
    reader.length = length;
    reader.max_side = max_side;
    reader.max_pixels = max_pixels;
    reader.status = NEST_IMG_CORRUPT; /* libpng's own errors are about bad data */
    reader.message = message;
    reader.message_capacity = message_capacity;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    png_set_read_fn(png, &reader, read_from_memory);
    /* libpng's default cap (1,000,000 per side) would fire first with a
     * generic message; lift it to the format maximum and apply max_side
     * ourselves so oversized images are reported as such. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);

    int status;
    if (setjmp(reader.jump) == 0) {
        decode_png(&reader, png, info, want_text);
        status = NEST_IMG_OK;
    } else {
        status = reader.status;
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(reader.rows);

    if (status != NEST_IMG_OK) {
        nest_image_free(&reader.result);
        return status;
    }
    *image = reader.result;
    return NEST_IMG_OK;
}
