// PNG through libpng. Every libpng call that can fail runs under a setjmp in this file; the
// error callback records the message and jumps back, and the caller gets a code.
#include "image_codecs.h"
#include "messages.h"
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    char *message;
    int32_t capacity;
    int32_t code;  // the code to return when libpng reports an error
} png_context;

static void on_error(png_structp png, png_const_charp text) {
    png_context *context = (png_context *)png_get_error_ptr(png);
    a2q_image_message(context->message, context->capacity, "%s", text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;  // warnings (a bad ancillary chunk, an odd profile) do not stop reading
    (void)text;
}

static void read_bytes(png_structp png, png_bytep out, size_t length) {
    png_context *context = (png_context *)png_get_io_ptr(png);
    if (length > context->size - context->offset) {
        context->code = A2Q_IMAGE_TRUNCATED;
        png_error(png, "the file ends before the image is complete (truncated)");
    }
    memcpy(out, context->data + context->offset, length);
    context->offset += length;
}

/// Creates the read structures over the data and reads the header; NULL on failure.
static png_structp open_reader(png_context *context, png_infopp info) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, context, on_error, on_warning);
    if (png == NULL) return NULL;
    *info = png_create_info_struct(png);
    if (*info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return NULL;
    }
    png_set_read_fn(png, context, read_bytes);
    // The caller bounds width * height before it allocates; libpng's own per-side limit
    // (1,000,000) would otherwise speak first with a different message.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    return png;
}

static int32_t check_signature(const uint8_t *data, int64_t size, char *message, int32_t capacity) {
    if (size < 8) {
        a2q_image_message(message, capacity, "the file ends inside the PNG signature (truncated)");
        return A2Q_IMAGE_TRUNCATED;
    }
    if (png_sig_cmp(data, 0, 8) != 0) {
        a2q_image_message(message, capacity, "not a PNG file (bad signature)");
        return A2Q_IMAGE_INVALID;
    }
    return A2Q_IMAGE_OK;
}

// The setjmp sits in these helpers and the context in their callers' frames: a local that
// changes between setjmp and longjmp (the code, set by the callbacks) would be indeterminate
// after the jump if it belonged to the function that called setjmp.

static int32_t read_size(png_context *context, int64_t *width, int64_t *height) {
    png_infop info = NULL;
    png_structp png = open_reader(context, &info);
    if (png == NULL) {
        a2q_image_message(context->message, context->capacity, "libpng could not allocate its reader");
        return A2Q_IMAGE_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return context->code;
    }
    png_read_info(png, info);
    *width = (int64_t)png_get_image_width(png, info);
    *height = (int64_t)png_get_image_height(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    return A2Q_IMAGE_OK;
}

static int32_t decode(png_context *context, uint8_t *rgb, int64_t width, int64_t height) {
    png_infop info = NULL;
    png_structp png = open_reader(context, &info);
    if (png == NULL) {
        a2q_image_message(context->message, context->capacity, "libpng could not allocate its reader");
        return A2Q_IMAGE_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return context->code;
    }
    png_read_info(png, info);
    const int color = png_get_color_type(png, info);
    const int depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    // Also drops the alpha that a tRNS chunk (palette, gray or RGB) would expand to.
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    const int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if ((int64_t)png_get_image_width(png, info) != width || (int64_t)png_get_image_height(png, info) != height) {
        a2q_image_message(context->message, context->capacity, "the image is %ux%u, the buffer is for %lldx%lld",
                          png_get_image_width(png, info), png_get_image_height(png, info),
                          (long long)width, (long long)height);
        png_destroy_read_struct(&png, &info, NULL);
        return A2Q_IMAGE_SIZE_MISMATCH;
    }
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)width * 3) {
        a2q_image_message(context->message, context->capacity,
                          "libpng's conversion gave %d channels of %d bits (colour type %d, depth %d)",
                          png_get_channels(png, info), png_get_bit_depth(png, info), color, depth);
        png_destroy_read_struct(&png, &info, NULL);
        return A2Q_IMAGE_UNSUPPORTED;
    }
    // Interlaced images: every pass visits every row; libpng fills in that pass's pixels.
    for (int pass = 0; pass < passes; pass++) {
        for (int64_t y = 0; y < height; y++) png_read_row(png, rgb + (size_t)y * (size_t)width * 3, NULL);
    }
    png_read_end(png, NULL);  // the chunks after the image data, through IEND (a cut file fails here)
    png_destroy_read_struct(&png, &info, NULL);
    return A2Q_IMAGE_OK;
}

int32_t a2q_png_read_size(const uint8_t *data, int64_t size, int64_t *width, int64_t *height,
                          char *message, int32_t capacity) {
    int32_t status = check_signature(data, size, message, capacity);
    if (status != A2Q_IMAGE_OK) return status;
    png_context context = {data, (size_t)size, 0, message, capacity, A2Q_IMAGE_INVALID};
    return read_size(&context, width, height);
}

int32_t a2q_png_decode_rgb(const uint8_t *data, int64_t size, uint8_t *rgb, int64_t width, int64_t height,
                           char *message, int32_t capacity) {
    int32_t status = check_signature(data, size, message, capacity);
    if (status != A2Q_IMAGE_OK) return status;
    png_context context = {data, (size_t)size, 0, message, capacity, A2Q_IMAGE_INVALID};
    return decode(&context, rgb, width, height);
}

typedef struct {
    char *message;
    int32_t capacity;
} png_write_context;

static void on_write_error(png_structp png, png_const_charp text) {
    png_write_context *context = (png_write_context *)png_get_error_ptr(png);
    a2q_image_message(context->message, context->capacity, "%s (%s)", text, strerror(errno));
    png_longjmp(png, 1);
}

int32_t a2q_png_write_rgb(const char *path, const uint8_t *rgb, int64_t width, int64_t height,
                          char *message, int32_t capacity) {
    if (width <= 0 || height <= 0 || width > 0x7fffffff || height > 0x7fffffff) {
        a2q_image_message(message, capacity, "cannot write a %lldx%lld PNG", (long long)width, (long long)height);
        return A2Q_IMAGE_SIZE_MISMATCH;
    }
    FILE *file = fopen(path, "wb");
    if (file == NULL) {
        a2q_image_message(message, capacity, "cannot create the file: %s", strerror(errno));
        return A2Q_IMAGE_IO;
    }
    png_write_context context = {message, capacity};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, on_write_error, on_warning);
    png_infop info = png == NULL ? NULL : png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        fclose(file);
        a2q_image_message(message, capacity, "libpng could not allocate its writer");
        return A2Q_IMAGE_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(file);
        return A2Q_IMAGE_IO;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < height; y++) png_write_row(png, rgb + (size_t)y * (size_t)width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fflush(file) != 0 || ferror(file)) {
        a2q_image_message(message, capacity, "writing failed: %s", strerror(errno));
        fclose(file);
        return A2Q_IMAGE_IO;
    }
    if (fclose(file) != 0) {
        a2q_image_message(message, capacity, "closing the file failed: %s", strerror(errno));
        return A2Q_IMAGE_IO;
    }
    return A2Q_IMAGE_OK;
}
