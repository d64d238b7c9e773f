/*
 * CImageCodecs: a thin, crash-proof C layer over libpng 1.6 and libjpeg(-turbo).
 *
 * Both libraries report fatal errors by longjmp (libjpeg's default even calls
 * exit()). Swift cannot unwind through C frames, so every entry point here
 * installs its own setjmp-based handler and turns failures into a status code
 * plus a one-line message written to a caller-supplied buffer. Nothing in this
 * layer ever aborts the process or prints to stderr.
 *
 * All inputs and outputs are memory buffers (no FILE*): Swift owns file I/O,
 * which keeps atomic writes and error wording in one place.
 *
 * This header deliberately does not include png.h or jpeglib.h, so the Swift
 * side sees only the small API below.
 */
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result of every call. The message buffer is filled for anything but OK. */
typedef enum {
    NEST_IMG_OK = 0,
    NEST_IMG_CORRUPT = 1,     /* malformed data: bad CRC, bad marker, bad stream */
    NEST_IMG_TRUNCATED = 2,   /* data ended early */
    NEST_IMG_TOO_LARGE = 3,   /* dimensions over the caller's limit, or size overflow */
    NEST_IMG_UNSUPPORTED = 4, /* valid file we decline to handle (e.g. odd JPEG color space) */
    NEST_IMG_NO_MEMORY = 5,
    NEST_IMG_BAD_ARGUMENT = 6 /* caller passed inconsistent parameters */
} nest_img_status;

/* One text chunk. Keys are Latin-1. Values are Latin-1 (tEXt/zTXt) or UTF-8
 * (iTXt, is_utf8 != 0). Strings are NUL-terminated; value_len excludes the NUL. */
typedef struct {
    char *key;
    char *value;
    size_t value_len;
    int is_utf8;
} nest_text_entry;

/* A decoded image: 8-bit samples, interleaved, row-major, no padding. */
typedef struct {
    uint32_t width;
    uint32_t height;
    uint32_t channels;        /* 3 = RGB, 4 = RGBA */
    uint8_t *pixels;          /* width * height * channels bytes */
    nest_text_entry *texts;   /* PNG text chunks (only when requested) */
    uint32_t text_count;
} nest_decoded_image;

/* A malloc'd output buffer (encoders). Release with nest_buffer_free. */
typedef struct {
    uint8_t *data;
    size_t length;
} nest_buffer;

/* Frees everything a decoder put in *image and zeroes it. Safe on a zeroed struct. */
void nest_image_free(nest_decoded_image *image);
void nest_buffer_free(nest_buffer *buffer);

/* ---- PNG ---------------------------------------------------------------- */

/* Decodes any PNG (all color types, 1-16 bits, interlaced) to 8-bit RGB or
 * RGBA. Alpha is kept as a separate channel, never composited. Images wider or
 * taller than max_side, or with more than max_pixels pixels, fail with
 * NEST_IMG_TOO_LARGE from the header, before any big allocation.
 * With want_text != 0 all tEXt/zTXt/iTXt chunks (before and after IDAT) are
 * returned in image->texts. */
int nest_png_decode(const uint8_t *data, size_t length, uint32_t max_side, uint64_t max_pixels, int want_text,
                    nest_decoded_image *image, char *message, size_t message_capacity);

/* Text chunk to write. is_utf8 == 0 writes tEXt (key and value must be
 * Latin-1 bytes); is_utf8 != 0 writes uncompressed iTXt (value is UTF-8). */
typedef struct {
    const char *key;
    const char *value;
    int is_utf8;
} nest_text_input;

/* Encodes 8-bit RGB (channels 3) or RGBA (channels 4) pixels as PNG. Text
 * chunks are written before IDAT, where readers that stop early still see them. */
int nest_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                    const nest_text_input *texts, uint32_t text_count,
                    nest_buffer *out, char *message, size_t message_capacity);

/* Test helper: writes a PNG in any IHDR layout so decoding paths can be
 * exercised without binary fixtures. samples holds one value per sample
 * (width * height * samples-per-pixel, each < 2^bit_depth); this function
 * packs sub-byte depths and writes 16-bit values big-endian. For color_type 3
 * (palette) palette_rgb has palette_count RGB triples. trns: for palette, the
 * alpha of the first trns_count entries; for gray (1 value) or RGB (3 values),
 * the transparent color. Pass trns_count 0 for no tRNS chunk. */
int nest_test_write_png(const uint16_t *samples, uint32_t width, uint32_t height,
                        int color_type, int bit_depth, int interlaced,
                        const uint8_t *palette_rgb, uint32_t palette_count,
                        const uint16_t *trns, uint32_t trns_count,
                        nest_buffer *out, char *message, size_t message_capacity);

/* Inflates one zlib stream (a zTXt or compressed iTXt value) into out, failing
 * with NEST_IMG_TOO_LARGE past max_output bytes. Release out with nest_buffer_free. */
int nest_inflate_text(const uint8_t *data, size_t length, size_t max_output,
                      nest_buffer *out, char *message, size_t message_capacity);

/* ---- JPEG --------------------------------------------------------------- */

/* Decodes baseline or progressive JPEG to 8-bit RGB (channels 3). Grayscale is
 * expanded to RGB. CMYK/YCCK is converted to RGB, treating the samples as
 * Adobe-inverted when the file carries an Adobe marker (as Photoshop writes
 * them) and as plain CMYK otherwise. A premature end of data or a
 * data-destroying corruption warning is an error, not a gray-filled image.
 * Size limits as for nest_png_decode, checked from the SOF header. */
int nest_jpeg_decode(const uint8_t *data, size_t length, uint32_t max_side, uint64_t max_pixels,
                     nest_decoded_image *image, char *message, size_t message_capacity);

/* Encodes interleaved 8-bit samples as JPEG. components: 1 = grayscale,
 * 3 = RGB, 4 = CMYK (stored as given, with an Adobe marker, so callers wanting
 * the Photoshop convention pass inverted values). quality is 1...100. */
int nest_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t components,
                     int quality, int progressive,
                     nest_buffer *out, char *message, size_t message_capacity);

#ifdef __cplusplus
}
#endif

#endif /* CIMAGECODECS_H */
