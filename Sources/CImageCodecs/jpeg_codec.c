/*
 * JPEG decoding and encoding in memory with libjpeg-turbo.
 *
 * libjpeg's default error_exit prints and calls exit(), so we install our own
 * error manager: error_exit longjmps back to the entry point, and
 * emit_message promotes the warnings that mean "these pixels are made up"
 * (premature end of data, corrupt entropy data) to errors. Without that, a
 * truncated file decodes "successfully" with a gray bottom.
 */
#include "CImageCodecs.h"
#include "codec_common.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t declared first */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr base; /* first, so cinfo->err can be cast back to us */
    jmp_buf jump;
    int status;
    char *message;
    size_t message_capacity;
    /* Buffers that outlive a jump; freed on failure, handed out on success. */
    nest_decoded_image result;
    nest_growable output;
} jpeg_guard;

/* Our own failures take the same exit as libjpeg's. */
static void guard_fail(jpeg_guard *guard, int status, const char *text) {
    guard->status = status;
    nest_set_message(guard->message, guard->message_capacity, "%s", text);
    longjmp(guard->jump, 1);
}

static void on_jpeg_error(j_common_ptr cinfo) {
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    /* guard->status holds the default for this operation: corrupt data when
     * decoding, a bad request when encoding. */
    guard_fail(guard, cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? NEST_IMG_NO_MEMORY : guard->status, text);
}

static void on_jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return; /* trace output: we never want it on stderr */
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    cinfo->err->num_warnings++;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
        /* The memory source hit the end of the buffer and would pad with a
         * fake EOI marker, leaving the rest of the image gray. */
        guard_fail(guard, NEST_IMG_TRUNCATED, "premature end of data");
        break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC: {
        /* Entropy-coded data is damaged: decoding would go on with garbage. */
        char text[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, text);
        guard_fail(guard, NEST_IMG_CORRUPT, text);
        break;
    }
    default:
        /* Extraneous bytes between markers, unknown JFIF revisions and the
         * like leave the pixels intact and are common in real files. */
        break;
    }
}

static void install_guard(jpeg_guard *guard, char *message, size_t message_capacity) {
    memset(guard, 0, sizeof *guard);
    jpeg_std_error(&guard->base);
    guard->base.error_exit = on_jpeg_error;
    guard->base.emit_message = on_jpeg_message;
    guard->status = NEST_IMG_CORRUPT;
    guard->message = message;
    guard->message_capacity = message_capacity;
}

/* Converts CMYK rows to RGB in place (each 4-byte pixel becomes 3 bytes;
 * writing never overtakes reading). Adobe files store inverted values
 * (255 = no ink), so R = C*K/255 on the stored samples; plain CMYK is
 * inverted first. */
static void cmyk_to_rgb(uint8_t *pixels, size_t pixel_count, int adobe_inverted) {
    for (size_t i = 0; i < pixel_count; i++) {
        unsigned c = pixels[4 * i], m = pixels[4 * i + 1], y = pixels[4 * i + 2], k = pixels[4 * i + 3];
        if (!adobe_inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        pixels[3 * i] = (uint8_t)((c * k + 127) / 255);
        pixels[3 * i + 1] = (uint8_t)((m * k + 127) / 255);
        pixels[3 * i + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

static void decode_jpeg(jpeg_guard *guard, struct jpeg_decompress_struct *cinfo,
                        const uint8_t *data, size_t length, uint32_t max_side, uint64_t max_pixels) {
    jpeg_mem_src(cinfo, data, (unsigned long)length);
    jpeg_read_header(cinfo, TRUE);
    char limit_text[160];
    if (!nest_dimensions_fit(cinfo->image_width, cinfo->image_height, max_side, max_pixels,
                             limit_text, sizeof limit_text)) {
        guard_fail(guard, NEST_IMG_TOO_LARGE, limit_text);
    }

    int cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: /* libjpeg-turbo expands gray to RGB itself */
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK: /* libjpeg turns YCCK back into CMYK; we do CMYK -> RGB */
        cinfo->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default: {
        char text[160];
        nest_set_message(text, sizeof text, "unsupported color space with %d components",
                         cinfo->num_components);
        guard_fail(guard, NEST_IMG_UNSUPPORTED, text);
    }
    }

    jpeg_start_decompress(cinfo);
    size_t components = (size_t)cinfo->output_components;
    if (components != (cmyk ? 4u : 3u)) guard_fail(guard, NEST_IMG_UNSUPPORTED, "unexpected output components");
    size_t width = cinfo->output_width, height = cinfo->output_height;
    size_t total = nest_checked_product(width, height, components);
    if (total == 0) guard_fail(guard, NEST_IMG_TOO_LARGE, "image size overflows memory");
    guard->result.pixels = malloc(total);
    if (guard->result.pixels == NULL) guard_fail(guard, NEST_IMG_NO_MEMORY, "out of memory for pixels");

    size_t row_bytes = width * components;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = guard->result.pixels + (size_t)cinfo->output_scanline * row_bytes;
        jpeg_read_scanlines(cinfo, &row, 1);
    }
    /* Reads up to EOI, so data cut right after the last scan is noticed too. */
    jpeg_finish_decompress(cinfo);

    if (cmyk) cmyk_to_rgb(guard->result.pixels, width * height, cinfo->saw_Adobe_marker);
    guard->result.width = (uint32_t)width;
    guard->result.height = (uint32_t)height;
    guard->result.channels = 3;
}

int nest_jpeg_decode(const uint8_t *data, size_t length, uint32_t max_side, uint64_t max_pixels,
                     nest_decoded_image *image, char *message, size_t message_capacity) {
    if (image == NULL || (data == NULL && length > 0)) return NEST_IMG_BAD_ARGUMENT;
    memset(image, 0, sizeof *image);

    jpeg_guard guard;
    install_guard(&guard, message, message_capacity);
    struct jpeg_decompress_struct cinfo;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = &guard.base;

    int status;
    if (setjmp(guard.jump) == 0) {
        jpeg_create_decompress(&cinfo);
        decode_jpeg(&guard, &cinfo, data, length, max_side, max_pixels);
        status = NEST_IMG_OK;
    } else {
        status = guard.status;
    }
    /* Safe after a jump from any point, including inside jpeg_create_decompress. */
    jpeg_destroy_decompress(&cinfo);

    if (status != NEST_IMG_OK) {
        nest_image_free(&guard.result);
        return status;
    }
    *image = guard.result;
    return NEST_IMG_OK;
}

/* ---- encoding ----------------------------------------------------------- */

/* A destination manager writing into a nest_growable. We avoid jpeg_mem_dest
 * because after an error its caller-visible pointer can dangle, which makes
 * cleanup on the failure path impossible to do safely. */
enum { JPEG_CHUNK = 16384 };

typedef struct {
    struct jpeg_destination_mgr base;
    jpeg_guard *guard;
    JOCTET chunk[JPEG_CHUNK];
} growable_destination;

static void destination_init(j_compress_ptr cinfo) {
    growable_destination *destination = (growable_destination *)cinfo->dest;
    destination->base.next_output_byte = destination->chunk;
    destination->base.free_in_buffer = JPEG_CHUNK;
}

static void destination_flush(growable_destination *destination, size_t count) {
    if (!nest_growable_append(&destination->guard->output, destination->chunk, count)) {
        guard_fail(destination->guard, NEST_IMG_NO_MEMORY, "out of memory for JPEG output");
    }
    destination->base.next_output_byte = destination->chunk;
    destination->base.free_in_buffer = JPEG_CHUNK;
}

static boolean destination_empty(j_compress_ptr cinfo) {
    destination_flush((growable_destination *)cinfo->dest, JPEG_CHUNK); /* libjpeg: whole buffer is full */
    return TRUE;
}

static void destination_term(j_compress_ptr cinfo) {
    growable_destination *destination = (growable_destination *)cinfo->dest;
    destination_flush(destination, JPEG_CHUNK - destination->base.free_in_buffer);
}

static void encode_jpeg(struct jpeg_compress_struct *cinfo, const uint8_t *pixels, uint32_t width,
                        uint32_t height, uint32_t components, int quality, int progressive) {
    cinfo->image_width = width;
    cinfo->image_height = height;
    cinfo->input_components = (int)components;
    cinfo->in_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    /* For CMYK input this picks YCCK storage and writes an Adobe marker. */
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    if (progressive) jpeg_simple_progression(cinfo);
    jpeg_start_compress(cinfo, TRUE);
    size_t row_bytes = (size_t)width * components;
    while (cinfo->next_scanline < cinfo->image_height) {
        /* libjpeg's API takes non-const rows but only reads them. */
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo->next_scanline * row_bytes);
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
}

int nest_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t components,
                     int quality, int progressive,
                     nest_buffer *out, char *message, size_t message_capacity) {
    if (out == NULL) return NEST_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (pixels == NULL || width == 0 || height == 0 || width > JPEG_MAX_DIMENSION ||
        height > JPEG_MAX_DIMENSION || (components != 1 && components != 3 && components != 4) ||
        quality < 1 || quality > 100) {
        nest_set_message(message, message_capacity, "invalid image or quality for JPEG encoding");
        return NEST_IMG_BAD_ARGUMENT;
    }

    jpeg_guard guard;
    install_guard(&guard, message, message_capacity);
    guard.status = NEST_IMG_BAD_ARGUMENT;
    growable_destination *destination = calloc(1, sizeof *destination);
    if (destination == NULL) {
        nest_set_message(message, message_capacity, "out of memory");
        return NEST_IMG_NO_MEMORY;
    }
    destination->guard = &guard;
    destination->base.init_destination = destination_init;
    destination->base.empty_output_buffer = destination_empty;
    destination->base.term_destination = destination_term;

    struct jpeg_compress_struct cinfo;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = &guard.base;

    int status;
    if (setjmp(guard.jump) == 0) {
        jpeg_create_compress(&cinfo);
        cinfo.dest = &destination->base;
        encode_jpeg(&cinfo, pixels, width, height, components, quality, progressive);
        status = NEST_IMG_OK;
    } else {
        status = guard.status;
    }
    jpeg_destroy_compress(&cinfo);
    free(destination);

    if (status != NEST_IMG_OK) {
        free(guard.output.data);
        return status;
    }
    out->data = guard.output.data;
    out->length = guard.output.length;
    return NEST_IMG_OK;
}
