/*
 * PNG encoding to memory with libpng 1.6, plus a test-only writer for any IHDR
 * layout. Same error discipline as png_decode.c: libpng errors longjmp to the
 * function holding setjmp, and everything that must survive the jump lives in
 * a struct reached through a pointer.
 */
#include "CImageCodecs.h"
#include "codec_common.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jmp_buf jump;
    int status;
    char *message;
    size_t message_capacity;
    nest_growable output;
} png_writer;

/* Everything libpng needs to write one image; rows are already packed. */
typedef struct {
    uint32_t width;
    uint32_t height;
    int color_type;
    int bit_depth;
    int interlaced;
    const png_color *palette;
    int palette_count;
    const png_byte *trns_alpha;     /* palette images */
    int trns_alpha_count;
    const png_color_16 *trns_color; /* gray and RGB images */
    const png_text *texts;
    int text_count;
    png_bytep *rows;
} png_layout;

static void on_png_error(png_structp png, png_const_charp text) {
    png_writer *writer = png_get_error_ptr(png);
    nest_set_message(writer->message, writer->message_capacity, "%s", text);
    longjmp(writer->jump, 1);
}

static void on_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void write_to_memory(png_structp png, png_bytep bytes, size_t count) {
    png_writer *writer = png_get_io_ptr(png);
    if (!nest_growable_append(&writer->output, bytes, count)) {
        writer->status = NEST_IMG_NO_MEMORY;
        png_error(png, "out of memory for PNG output");
    }
}

static void flush_memory(png_structp png) {
    (void)png;
}

static void write_layout(png_structp png, png_infop info, const png_layout *layout) {
    png_set_IHDR(png, info, layout->width, layout->height, layout->bit_depth, layout->color_type,
                 layout->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (layout->palette_count > 0) png_set_PLTE(png, info, layout->palette, layout->palette_count);
    if (layout->trns_alpha_count > 0 || layout->trns_color != NULL) {
        png_set_tRNS(png, info, layout->trns_alpha, layout->trns_alpha_count, layout->trns_color);
    }
    /* Set before png_write_info so the chunks land ahead of IDAT: tools that
     * read only the header (and web UIs reading "parameters") find them. */
    if (layout->text_count > 0) png_set_text(png, info, layout->texts, layout->text_count);
    png_write_info(png, info);
    png_write_image(png, layout->rows); /* runs the Adam7 passes itself when interlaced */
    png_write_end(png, NULL);
}

static int write_png(const png_layout *layout, nest_buffer *out, char *message, size_t message_capacity) {
    png_writer writer;
    memset(&writer, 0, sizeof writer);
    /* Writer-side libpng errors mean the caller described an invalid image. */
    writer.status = NEST_IMG_BAD_ARGUMENT;
    writer.message = message;
    writer.message_capacity = message_capacity;

    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &writer, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    png_set_write_fn(png, &writer, write_to_memory, flush_memory);

    int status;
    if (setjmp(writer.jump) == 0) {
        write_layout(png, info, layout);
        status = NEST_IMG_OK;
    } else {
        status = writer.status;
    }
    png_destroy_write_struct(&png, &info);

    if (status != NEST_IMG_OK) {
        free(writer.output.data);
        return status;
    }
    out->data = writer.output.data;
    out->length = writer.output.length;
    return NEST_IMG_OK;
}

/* Row pointers into a packed image (libpng copies each row before filtering,
 * so the const input is never written). */
static png_bytep *make_rows(const uint8_t *pixels, uint32_t height, size_t row_bytes) {
    png_bytep *rows = malloc(sizeof(png_bytep) * (height ? height : 1));
    if (rows == NULL) return NULL;
    for (uint32_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * row_bytes);
    return rows;
}

int nest_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                    const nest_text_input *texts, uint32_t text_count,
                    nest_buffer *out, char *message, size_t message_capacity) {
    if (out == NULL) return NEST_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (pixels == NULL || width == 0 || height == 0 || (channels != 3 && channels != 4) ||
        (texts == NULL && text_count > 0) || text_count > INT32_MAX) {
        nest_set_message(message, message_capacity, "invalid image for PNG encoding");
        return NEST_IMG_BAD_ARGUMENT;
    }
    size_t row_bytes = nest_checked_product(width, channels, 1);
    if (nest_checked_product(row_bytes, height, 1) == 0) {
        nest_set_message(message, message_capacity, "image size overflows memory");
        return NEST_IMG_TOO_LARGE;
    }

    png_bytep *rows = make_rows(pixels, height, row_bytes);
    png_text *chunks = calloc(text_count ? text_count : 1, sizeof(png_text));
    if (rows == NULL || chunks == NULL) {
        free(rows);
        free(chunks);
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    for (uint32_t i = 0; i < text_count; i++) {
        /* libpng never writes through these pointers; its struct is just not const. */
        chunks[i].key = (png_charp)texts[i].key;
        chunks[i].text = (png_charp)texts[i].value;
        chunks[i].compression = texts[i].is_utf8 ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    }

    png_layout layout = {
        .width = width,
        .height = height,
        .color_type = channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB,
        .bit_depth = 8,
        .texts = chunks,
        .text_count = (int)text_count,
        .rows = rows,
    };
    int status = write_png(&layout, out, message, message_capacity);
    free(rows);
    free(chunks);
    return status;
}

/* ---- test helper ------------------------------------------------------- */

static int samples_per_pixel(int color_type) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_PALETTE: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 0;
    }
}

/* Packs one-value-per-sample input into PNG row layout: sub-byte depths fill
 * each byte from the most significant bit, 16-bit values are big-endian. */
static void pack_rows(const uint16_t *samples, uint32_t width, uint32_t height, int per_pixel,
                      int bit_depth, size_t row_bytes, uint8_t *packed) {
    size_t per_row = (size_t)width * (size_t)per_pixel;
    memset(packed, 0, row_bytes * height);
    for (uint32_t y = 0; y < height; y++) {
        const uint16_t *source = samples + (size_t)y * per_row;
        uint8_t *row = packed + (size_t)y * row_bytes;
        for (size_t i = 0; i < per_row; i++) {
            if (bit_depth == 16) {
                row[2 * i] = (uint8_t)(source[i] >> 8);
                row[2 * i + 1] = (uint8_t)(source[i] & 0xff);
            } else if (bit_depth == 8) {
                row[i] = (uint8_t)source[i];
            } else {
                size_t bit = i * (size_t)bit_depth;
                row[bit / 8] |= (uint8_t)(source[i] << (8 - bit_depth - (int)(bit % 8)));
            }
        }
    }
}

int nest_test_write_png(const uint16_t *samples, uint32_t width, uint32_t height,
                        int color_type, int bit_depth, int interlaced,
                        const uint8_t *palette_rgb, uint32_t palette_count,
                        const uint16_t *trns, uint32_t trns_count,
                        nest_buffer *out, char *message, size_t message_capacity) {
    if (out == NULL) return NEST_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    int per_pixel = samples_per_pixel(color_type);
    int depth_ok = bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8 || bit_depth == 16;
    if (samples == NULL || per_pixel == 0 || !depth_ok || width == 0 || height == 0 || width > 65535 ||
        height > 65535 || palette_count > 256 || trns_count > 256 ||
        (palette_rgb == NULL && palette_count > 0) || (trns == NULL && trns_count > 0)) {
        nest_set_message(message, message_capacity, "invalid test PNG parameters");
        return NEST_IMG_BAD_ARGUMENT;
    }
    size_t count = (size_t)width * height * (size_t)per_pixel;
    uint32_t limit = color_type == PNG_COLOR_TYPE_PALETTE ? palette_count : (1u << bit_depth);
    for (size_t i = 0; i < count; i++) {
        if (samples[i] >= limit) {
            nest_set_message(message, message_capacity, "sample %zu (%u) out of range", i, samples[i]);
            return NEST_IMG_BAD_ARGUMENT;
        }
    }

    size_t row_bytes = ((size_t)width * (size_t)per_pixel * (size_t)bit_depth + 7) / 8;
    uint8_t *packed = malloc(row_bytes * height);
    png_bytep *rows = packed ? make_rows(packed, height, row_bytes) : NULL;
    if (rows == NULL) {
        free(packed);
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    pack_rows(samples, width, height, per_pixel, bit_depth, row_bytes, packed);

    png_color palette[256];
    for (uint32_t i = 0; i < palette_count; i++) {
        palette[i].red = palette_rgb[3 * i];
        palette[i].green = palette_rgb[3 * i + 1];
        palette[i].blue = palette_rgb[3 * i + 2];
    }
    png_byte trns_alpha[256];
    png_color_16 trns_color;
    memset(&trns_color, 0, sizeof trns_color);
    png_layout layout = {
        .width = width, .height = height, .color_type = color_type, .bit_depth = bit_depth,
        .interlaced = interlaced, .palette = palette, .palette_count = (int)palette_count, .rows = rows,
    };
    if (trns_count > 0 && color_type == PNG_COLOR_TYPE_PALETTE) {
        for (uint32_t i = 0; i < trns_count; i++) trns_alpha[i] = (png_byte)trns[i];
        layout.trns_alpha = trns_alpha;
        layout.trns_alpha_count = (int)trns_count;
    } else if (trns_count == 1 && color_type == PNG_COLOR_TYPE_GRAY) {
        trns_color.gray = trns[0];
        layout.trns_color = &trns_color;
    } else if (trns_count == 3 && color_type == PNG_COLOR_TYPE_RGB) {
        trns_color.red = trns[0];
        trns_color.green = trns[1];
        trns_color.blue = trns[2];
        layout.trns_color = &trns_color;
    } else if (trns_count > 0) {
        free(rows);
        free(packed);
        nest_set_message(message, message_capacity, "tRNS needs a palette, 1 gray or 3 RGB values");
        return NEST_IMG_BAD_ARGUMENT;
    }
    int status = write_png(&layout, out, message, message_capacity);
    free(rows);
    free(packed);
    return status;
}
