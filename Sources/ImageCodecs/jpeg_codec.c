// JPEG through libjpeg-turbo. Its error_exit (and the warnings treated as errors) record the
// message and longjmp back to the helper that called setjmp; the caller gets a code.
#include "image_codecs.h"
#include "messages.h"
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr manager;  // first: libjpeg passes a pointer to it
    jmp_buf jump;
    char *message;
    int32_t capacity;
    int32_t code;
} jpeg_context;

static void record(j_common_ptr info, int32_t code) {
    jpeg_context *context = (jpeg_context *)info->err;
    char text[JMSG_LENGTH_MAX];
    (*info->err->format_message)(info, text);
    context->code = code;
    if (code == A2Q_IMAGE_TRUNCATED) {
        a2q_image_message(context->message, context->capacity, "%s: the file ends before the image is complete (truncated)", text);
    } else {
        a2q_image_message(context->message, context->capacity, "%s", text);
    }
}

static void on_error(j_common_ptr info) {
    record(info, info->err->msg_code == JERR_OUT_OF_MEMORY ? A2Q_IMAGE_MEMORY : A2Q_IMAGE_INVALID);
    longjmp(((jpeg_context *)info->err)->jump, 1);
}

/// level < 0: a warning. Missing data (libjpeg would fill the rest with gray) and broken
/// entropy-coded data are errors; other warnings (extra bytes between markers, an unknown
/// JFIF revision) are not.
static void on_message(j_common_ptr info, int level) {
    if (level >= 0) return;  // trace messages
    int code = info->err->msg_code;
    if (code == JWRN_JPEG_EOF) {
        record(info, A2Q_IMAGE_TRUNCATED);
        longjmp(((jpeg_context *)info->err)->jump, 1);
    }
    if (code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE || code == JWRN_MUST_RESYNC) {
        record(info, A2Q_IMAGE_INVALID);
        longjmp(((jpeg_context *)info->err)->jump, 1);
    }
    info->err->num_warnings++;
}

static void start(struct jpeg_decompress_struct *info, jpeg_context *context, const uint8_t *data, int64_t size) {
    info->err = jpeg_std_error(&context->manager);
    context->manager.error_exit = on_error;
    context->manager.emit_message = on_message;
    jpeg_create_decompress(info);
    jpeg_mem_src(info, data, (unsigned long)size);
}

// The setjmp sits in these helpers and the context and libjpeg's struct in their callers'
// frames, so that what the library changed before a jump is still defined after it.

static int32_t read_size(struct jpeg_decompress_struct *info, jpeg_context *context, const uint8_t *data, int64_t size,
                         int64_t *width, int64_t *height) {
    if (setjmp(context->jump)) {
        jpeg_destroy_decompress(info);
        return context->code;
    }
    start(info, context, data, size);
    jpeg_read_header(info, TRUE);
    *width = (int64_t)info->image_width;
    *height = (int64_t)info->image_height;
    jpeg_destroy_decompress(info);
    return A2Q_IMAGE_OK;
}

/// (255 - C)(255 - K) / 255 rounded to nearest, from Adobe's inverted samples c = 255 - C, k = 255 - K.
static inline uint8_t cmyk_channel(unsigned c, unsigned k) { return (uint8_t)((2 * c * k + 255) / 510); }

static int32_t decode(struct jpeg_decompress_struct *info, jpeg_context *context, const uint8_t *data, int64_t size,
                      uint8_t *rgb, int64_t width, int64_t height) {
    if (setjmp(context->jump)) {
        jpeg_destroy_decompress(info);
        return context->code;
    }
    start(info, context, data, size);
    jpeg_read_header(info, TRUE);
    int cmyk = 0;
    switch (info->jpeg_color_space) {
    case JCS_GRAYSCALE: case JCS_YCbCr: case JCS_RGB:
        info->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK: case JCS_YCCK:
        info->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        a2q_image_message(context->message, context->capacity, "unsupported JPEG colour space %d (%d components)",
                          (int)info->jpeg_color_space, info->num_components);
        jpeg_destroy_decompress(info);
        return A2Q_IMAGE_UNSUPPORTED;
    }
    jpeg_start_decompress(info);
    if ((int64_t)info->output_width != width || (int64_t)info->output_height != height) {
        a2q_image_message(context->message, context->capacity, "the image is %ux%u, the buffer is for %lldx%lld",
                          info->output_width, info->output_height, (long long)width, (long long)height);
        jpeg_destroy_decompress(info);
        return A2Q_IMAGE_SIZE_MISMATCH;
    }
    if (info->output_components != (cmyk ? 4 : 3)) {
        a2q_image_message(context->message, context->capacity, "libjpeg gave %d components", info->output_components);
        jpeg_destroy_decompress(info);
        return A2Q_IMAGE_UNSUPPORTED;
    }
    // CMYK rows go through a row of the library's own pool (freed with the decompressor).
    JSAMPARRAY cmyk_row = cmyk ? (*info->mem->alloc_sarray)((j_common_ptr)info, JPOOL_IMAGE, (JDIMENSION)width * 4, 1) : NULL;
    while (info->output_scanline < info->output_height) {
        uint8_t *out = rgb + (size_t)info->output_scanline * (size_t)width * 3;
        if (!cmyk) {
            JSAMPROW row = out;
            jpeg_read_scanlines(info, &row, 1);
            continue;
        }
        jpeg_read_scanlines(info, cmyk_row, 1);
        const uint8_t *in = cmyk_row[0];
        for (int64_t x = 0; x < width; x++) {
            // Adobe's convention (what Photoshop writes and Pillow and browsers assume): stored inverted.
            unsigned c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2], k = in[4 * x + 3];
            out[3 * x] = cmyk_channel(c, k);
            out[3 * x + 1] = cmyk_channel(m, k);
            out[3 * x + 2] = cmyk_channel(y, k);
        }
    }
    jpeg_finish_decompress(info);  // reads through EOI (a cut file fails here)
    jpeg_destroy_decompress(info);
    return A2Q_IMAGE_OK;
}

static int32_t check_signature(const uint8_t *data, int64_t size, char *message, int32_t capacity) {
    if (size < 3) {
        a2q_image_message(message, capacity, "the file ends inside the JPEG signature (truncated)");
        return A2Q_IMAGE_TRUNCATED;
    }
    if (data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        a2q_image_message(message, capacity, "not a JPEG file (no start-of-image marker)");
        return A2Q_IMAGE_INVALID;
    }
    return A2Q_IMAGE_OK;
}

int32_t a2q_jpeg_read_size(const uint8_t *data, int64_t size, int64_t *width, int64_t *height,
                           char *message, int32_t capacity) {
    int32_t status = check_signature(data, size, message, capacity);
    if (status != A2Q_IMAGE_OK) return status;
    struct jpeg_decompress_struct info;
    memset(&info, 0, sizeof info);
    jpeg_context context;
    memset(&context, 0, sizeof context);
    context.message = message;
    context.capacity = capacity;
    context.code = A2Q_IMAGE_INVALID;
    return read_size(&info, &context, data, size, width, height);
}

int32_t a2q_jpeg_decode_rgb(const uint8_t *data, int64_t size, uint8_t *rgb, int64_t width, int64_t height,
                            char *message, int32_t capacity) {
    int32_t status = check_signature(data, size, message, capacity);
    if (status != A2Q_IMAGE_OK) return status;
    struct jpeg_decompress_struct info;
    memset(&info, 0, sizeof info);
    jpeg_context context;
    memset(&context, 0, sizeof context);
    context.message = message;
    context.capacity = capacity;
    context.code = A2Q_IMAGE_INVALID;
    return decode(&info, &context, data, size, rgb, width, height);
}
