// A thin C shim over the serial HDF5 library for Swift: only <stdint.h> types cross the boundary.
// Swift cannot use H5T_NATIVE_* (global state) nor H5F_ACC_* (comma macros) in Swift 6 mode.
// Handles are hid_t values (int64_t); negative return values mean failure.
#ifndef A2Q_HDF5_H
#define A2Q_HDF5_H
#include <stdint.h>

/// Element types understood by the shim (memory and file type are the same).
enum a2q_h5_type {
    A2Q_H5_F32 = 0, A2Q_H5_F64 = 1, A2Q_H5_I8 = 2, A2Q_H5_I16 = 3,
    A2Q_H5_I32 = 4, A2Q_H5_I64 = 5, A2Q_H5_U8 = 6, A2Q_H5_U64 = 7
};

void a2q_h5_version(uint32_t *major, uint32_t *minor, uint32_t *release);
/// Turns HDF5's automatic error-stack printing off (0) or on (1).
void a2q_h5_print_errors(int32_t on);

int64_t a2q_h5_file_create(const char *path);      // truncates
int64_t a2q_h5_file_open_read(const char *path);
int32_t a2q_h5_file_flush(int64_t file);
int32_t a2q_h5_file_close(int64_t file);
int32_t a2q_h5_is_hdf5(const char *path);         // >0 yes, 0 no, <0 error

int64_t a2q_h5_group_create(int64_t location, const char *name);
int64_t a2q_h5_group_open(int64_t location, const char *name);
int32_t a2q_h5_group_close(int64_t group);
/// 1 if a link of that name exists at location, 0 if not, negative on error.
int32_t a2q_h5_exists(int64_t location, const char *name);
/// Number of links in a group, and the name of link `index` (in creation or name order).
int64_t a2q_h5_child_count(int64_t group);
int32_t a2q_h5_child_name(int64_t group, int64_t index, char *buffer, int32_t capacity);

/// Writes a dataset (chunked with Fletcher32 when `checksum` != 0 and it holds data).
int32_t a2q_h5_dataset_write(int64_t location, const char *name, int32_t type, int32_t rank,
                             const int64_t *dims, const void *data, int32_t checksum);
/// Rank, dims (up to 8) and stored element type (-1 if not one of a2q_h5_type).
int32_t a2q_h5_dataset_info(int64_t location, const char *name, int32_t *type, int32_t *rank,
                            int64_t *dims);
/// Bytes the file actually stores for a dataset (less than declared when chunks were never
/// written or are compressed), or negative.
int64_t a2q_h5_dataset_storage_bytes(int64_t location, const char *name);
/// Reads a whole dataset converted to `type`; `count` is the buffer's element capacity.
int32_t a2q_h5_dataset_read(int64_t location, const char *name, int32_t type, void *data,
                            int64_t count);

int32_t a2q_h5_attr_exists(int64_t location, const char *name);
int32_t a2q_h5_attr_write_string(int64_t location, const char *name, const char *value);
int32_t a2q_h5_attr_write_i64(int64_t location, const char *name, int64_t value);
int32_t a2q_h5_attr_write_f64(int64_t location, const char *name, double value);
/// Length in bytes of a string attribute (without terminator), or negative.
int64_t a2q_h5_attr_string_length(int64_t location, const char *name);
int32_t a2q_h5_attr_read_string(int64_t location, const char *name, char *buffer, int64_t capacity);
int32_t a2q_h5_attr_read_i64(int64_t location, const char *name, int64_t *value);
int32_t a2q_h5_attr_read_f64(int64_t location, const char *name, double *value);

#endif
