// PNG and JPEG through libpng and libjpeg-turbo for Swift: only <stdint.h> types cross the
// boundary. Both libraries report errors by longjmp, which must never cross Swift frames, so
// every setjmp lives here and each call returns a code plus a message in the caller's buffer.
//
// Decoding takes the whole file in memory and works in two steps, so that the caller can check
// the size before it allocates: *_read_size parses the header, *_decode_rgb fills a caller
// buffer of width * height * 3 bytes with 8-bit RGB, interleaved, row by row from the top.
#ifndef A2Q_IMAGE_CODECS_H
#define A2Q_IMAGE_CODECS_H
#include <stdint.h>

/// Result codes (the message says more).
#define A2Q_IMAGE_OK 0
/// The data is not a valid image of the format (bad signature, bad chunk, corrupt data).
#define A2Q_IMAGE_INVALID 1
/// The data ends before the image is complete.
#define A2Q_IMAGE_TRUNCATED 2
/// A valid file of a kind this reader does not take (e.g. a JPEG colour space other than
/// grayscale, YCbCr/RGB, CMYK and YCCK).
#define A2Q_IMAGE_UNSUPPORTED 3
/// The caller's buffer does not match the image's size.
#define A2Q_IMAGE_SIZE_MISMATCH 4
/// Opening, writing or closing the output file failed (errno is in the message).
#define A2Q_IMAGE_IO 5
/// The library could not allocate memory.
#define A2Q_IMAGE_MEMORY 6

/// PNG: any colour type (gray, gray+alpha, palette, RGB, RGBA), bit depth 1-16, interlaced or
/// not. Palette and gray become RGB; alpha is dropped (not composited); 16-bit samples are
/// scaled to 8 bits with rounding, v * 255 / 65535 (libpng's png_set_scale_16); no gamma or
/// colour-profile correction.
int32_t a2q_png_read_size(const uint8_t *data, int64_t size, int64_t *width, int64_t *height,
                          char *message, int32_t capacity);
int32_t a2q_png_decode_rgb(const uint8_t *data, int64_t size, uint8_t *rgb, int64_t width, int64_t height,
                           char *message, int32_t capacity);

/// JPEG (baseline or progressive): grayscale, YCbCr and RGB are converted to RGB by
/// libjpeg-turbo (accurate integer IDCT, fancy upsampling: the library's defaults); CMYK and
/// YCCK (Adobe's inverted CMYK included) become R = (255 - C)(255 - K) / 255, rounded, and
/// likewise G and B. Data that ends early or breaks the entropy-coded segments is an error
/// (libjpeg only warns and fills the rest with gray); other warnings are ignored.
int32_t a2q_jpeg_read_size(const uint8_t *data, int64_t size, int64_t *width, int64_t *height,
                           char *message, int32_t capacity);
int32_t a2q_jpeg_decode_rgb(const uint8_t *data, int64_t size, uint8_t *rgb, int64_t width, int64_t height,
                            char *message, int32_t capacity);

/// Writes 8-bit RGB (interleaved, width * height * 3 bytes) as a non-interlaced PNG to `path`
/// (created or truncated), with zlib's default compression. The caller makes it crash-safe
/// (temporary name, fsync, rename).
int32_t a2q_png_write_rgb(const char *path, const uint8_t *rgb, int64_t width, int64_t height,
                          char *message, int32_t capacity);

#endif
