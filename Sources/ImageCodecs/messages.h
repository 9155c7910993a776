// Shared by the PNG and JPEG halves: copying a message into the caller's buffer.
#ifndef A2Q_IMAGE_MESSAGES_H
#define A2Q_IMAGE_MESSAGES_H
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

/// Writes the formatted text into `buffer` (always terminated, truncated to `capacity`).
__attribute__((format(printf, 3, 4)))
static inline void a2q_image_message(char *buffer, int32_t capacity, const char *format, ...) {
    if (buffer == NULL || capacity <= 0) return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(buffer, (size_t)capacity, format, arguments);
    va_end(arguments);
}
#endif
