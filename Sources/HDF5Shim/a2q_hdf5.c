#include "a2q_hdf5.h"
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t must be 64-bit");
_Static_assert(sizeof(hsize_t) == sizeof(int64_t), "hsize_t must be 64-bit");

// HDF5 closes whatever is still open from an atexit handler. After a failed write (a full
// disk) a file can be left half-closed, and that handler then crashes the process on its way
// out, after a2q has already reported the error. Every file a2q writes is closed (and checked)
// explicitly, so the handler has nothing useful to do: switch it off before HDF5 initialises.
__attribute__((constructor)) static void a2q_h5_no_atexit(void) { H5dont_atexit(); }

static hid_t native(int32_t type) {
    switch (type) {
    case A2Q_H5_F32: return H5T_NATIVE_FLOAT;
    case A2Q_H5_F64: return H5T_NATIVE_DOUBLE;
    case A2Q_H5_I8: return H5T_NATIVE_INT8;
    case A2Q_H5_I16: return H5T_NATIVE_INT16;
    case A2Q_H5_I32: return H5T_NATIVE_INT32;
    case A2Q_H5_I64: return H5T_NATIVE_INT64;
    case A2Q_H5_U8: return H5T_NATIVE_UINT8;
    case A2Q_H5_U64: return H5T_NATIVE_UINT64;
    default: return -1;
    }
}

static int32_t classify(hid_t type) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT) return size == 4 ? A2Q_H5_F32 : size == 8 ? A2Q_H5_F64 : -1;
    if (cls == H5T_INTEGER) {
        int is_signed = H5Tget_sign(type) == H5T_SGN_2;
        if (is_signed) {
            switch (size) { case 1: return A2Q_H5_I8; case 2: return A2Q_H5_I16;
                            case 4: return A2Q_H5_I32; case 8: return A2Q_H5_I64; }
        } else {
            if (size == 1) return A2Q_H5_U8;
            if (size == 8) return A2Q_H5_U64;
        }
    }
    return -1;
}

void a2q_h5_version(uint32_t *major, uint32_t *minor, uint32_t *release) {
    unsigned a = 0, b = 0, c = 0;
    H5get_libversion(&a, &b, &c);
    *major = a; *minor = b; *release = c;
}

void a2q_h5_print_errors(int32_t on) {
    if (on) H5Eset_auto2(H5E_DEFAULT, (H5E_auto2_t)H5Eprint2, stderr);
    else H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int64_t a2q_h5_file_create(const char *path) {
    return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}
int64_t a2q_h5_file_open_read(const char *path) {
    return H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
}
int32_t a2q_h5_file_flush(int64_t file) { return H5Fflush(file, H5F_SCOPE_GLOBAL); }
int32_t a2q_h5_file_close(int64_t file) { return H5Fclose(file); }
int32_t a2q_h5_is_hdf5(const char *path) { return H5Fis_hdf5(path); }

int64_t a2q_h5_group_create(int64_t location, const char *name) {
    hid_t plist = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_link_creation_order(plist, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t group = H5Gcreate2(location, name, H5P_DEFAULT, plist, H5P_DEFAULT);
    H5Pclose(plist);
    return group;
}
int64_t a2q_h5_group_open(int64_t location, const char *name) {
    return H5Gopen2(location, name, H5P_DEFAULT);
}
int32_t a2q_h5_group_close(int64_t group) { return H5Gclose(group); }

int32_t a2q_h5_exists(int64_t location, const char *name) {
    return H5Lexists(location, name, H5P_DEFAULT);
}

int64_t a2q_h5_child_count(int64_t group) {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) return -1;
    return (int64_t)info.nlinks;
}

int32_t a2q_h5_child_name(int64_t group, int64_t index, char *buffer, int32_t capacity) {
    // Creation order where tracked (groups we write), name order otherwise.
    ssize_t n = H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, (hsize_t)index,
                                   buffer, (size_t)capacity, H5P_DEFAULT);
    if (n < 0)
        n = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)index, buffer,
                               (size_t)capacity, H5P_DEFAULT);
    return n < 0 ? -1 : (n >= capacity ? -2 : 0);
}

int32_t a2q_h5_dataset_write(int64_t location, const char *name, int32_t type, int32_t rank,
                             const int64_t *dims, const void *data, int32_t checksum) {
    hid_t mem = native(type);
    if (mem < 0 || rank < 0 || rank > 8) return -1;
    hsize_t shape[8];
    hsize_t total = 1;
    for (int i = 0; i < rank; i++) { shape[i] = (hsize_t)dims[i]; total *= shape[i]; }
    hid_t space = H5Screate_simple(rank, shape, NULL);
    if (space < 0) return -1;
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    if (checksum && total > 0 && rank > 0) {
        H5Pset_chunk(plist, rank, shape);
        H5Pset_fletcher32(plist);
    }
    hid_t set = H5Dcreate2(location, name, mem, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    int32_t rc = -1;
    if (set >= 0) {
        rc = total == 0 ? 0 : H5Dwrite(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
        if (H5Dclose(set) < 0) rc = -1;
    }
    H5Pclose(plist);
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

int32_t a2q_h5_dataset_info(int64_t location, const char *name, int32_t *type, int32_t *rank,
                            int64_t *dims) {
    hid_t set = H5Dopen2(location, name, H5P_DEFAULT);
    if (set < 0) return -1;
    hid_t space = H5Dget_space(set);
    hid_t stored = H5Dget_type(set);
    int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    int32_t rc = 0;
    if (r < 0 || r > 8 || stored < 0) rc = -1;
    else {
        hsize_t shape[8];
        H5Sget_simple_extent_dims(space, shape, NULL);
        for (int i = 0; i < r; i++) dims[i] = (int64_t)shape[i];
        *rank = r;
        *type = classify(stored);
    }
    H5Tclose(stored);
    H5Sclose(space);
    H5Dclose(set);
    return rc;
}

int64_t a2q_h5_dataset_storage_bytes(int64_t location, const char *name) {
    hid_t set = H5Dopen2(location, name, H5P_DEFAULT);
    if (set < 0) return -1;
    hsize_t bytes = H5Dget_storage_size(set);
    H5Dclose(set);
    return (int64_t)bytes;
}

int32_t a2q_h5_dataset_read(int64_t location, const char *name, int32_t type, void *data,
                            int64_t count) {
    hid_t mem = native(type);
    if (mem < 0) return -1;
    hid_t set = H5Dopen2(location, name, H5P_DEFAULT);
    if (set < 0) return -1;
    hid_t space = H5Dget_space(set);
    hssize_t points = H5Sget_simple_extent_npoints(space);
    int32_t rc = -1;
    if (points >= 0 && points <= count)
        rc = points == 0 ? 0 : H5Dread(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Sclose(space);
    H5Dclose(set);
    return rc < 0 ? -1 : 0;
}

int32_t a2q_h5_attr_exists(int64_t location, const char *name) {
    return H5Aexists(location, name);
}

static int32_t write_scalar_attr(int64_t location, const char *name, hid_t type, const void *value) {
    if (H5Aexists(location, name) > 0) H5Adelete(location, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(location, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int32_t rc = -1;
    if (attr >= 0) {
        rc = H5Awrite(attr, type, value);
        if (H5Aclose(attr) < 0) rc = -1;
    }
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

static hid_t vlen_utf8(void) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    return type;
}

int32_t a2q_h5_attr_write_string(int64_t location, const char *name, const char *value) {
    hid_t type = vlen_utf8();
    int32_t rc = write_scalar_attr(location, name, type, &value);
    H5Tclose(type);
    return rc;
}
int32_t a2q_h5_attr_write_i64(int64_t location, const char *name, int64_t value) {
    return write_scalar_attr(location, name, H5T_NATIVE_INT64, &value);
}
int32_t a2q_h5_attr_write_f64(int64_t location, const char *name, double value) {
    return write_scalar_attr(location, name, H5T_NATIVE_DOUBLE, &value);
}

/// Reads a scalar (one-element) string attribute, variable or fixed length, into a malloc'ed,
/// terminated copy. Arrays of strings are refused (a one-pointer buffer cannot hold them).
static char *read_string_attr(int64_t location, const char *name) {
    hid_t attr = H5Aopen(location, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t stored = H5Aget_type(attr);
    hid_t space = H5Aget_space(attr);
    int scalar = space >= 0 && H5Sget_simple_extent_npoints(space) == 1;
    if (space >= 0) H5Sclose(space);
    char *result = NULL;
    if (scalar && H5Tget_class(stored) == H5T_STRING) {
        if (H5Tis_variable_str(stored) > 0) {
            hid_t type = vlen_utf8();
            char *value = NULL;
            if (H5Aread(attr, type, &value) >= 0 && value) {
                result = strdup(value);
                H5free_memory(value);
            }
            H5Tclose(type);
        } else {
            size_t size = H5Tget_size(stored);
            result = calloc(size + 1, 1);
            if (result && H5Aread(attr, stored, result) < 0) { free(result); result = NULL; }
        }
    }
    H5Tclose(stored);
    H5Aclose(attr);
    return result;
}

int64_t a2q_h5_attr_string_length(int64_t location, const char *name) {
    char *value = read_string_attr(location, name);
    if (!value) return -1;
    int64_t n = (int64_t)strlen(value);
    free(value);
    return n;
}

int32_t a2q_h5_attr_read_string(int64_t location, const char *name, char *buffer, int64_t capacity) {
    char *value = read_string_attr(location, name);
    if (!value) return -1;
    size_t n = strlen(value);
    int32_t rc = 0;
    if ((int64_t)n + 1 > capacity) rc = -2;
    else memcpy(buffer, value, n + 1);
    free(value);
    return rc;
}

/// Reads a one-element attribute as `type`. An integer read takes only an integer attribute
/// (HDF5 would convert a stored 2.5 to 2); a float read takes integers and floats.
static int32_t read_scalar_attr(int64_t location, const char *name, hid_t type, void *value) {
    hid_t attr = H5Aopen(location, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    hid_t stored = H5Aget_type(attr);
    H5T_class_t kind = stored >= 0 ? H5Tget_class(stored) : H5T_NO_CLASS;
    if (stored >= 0) H5Tclose(stored);
    int fits = H5Tget_class(type) == H5T_INTEGER ? kind == H5T_INTEGER : (kind == H5T_INTEGER || kind == H5T_FLOAT);
    hid_t space = H5Aget_space(attr);
    int32_t rc = fits && H5Sget_simple_extent_npoints(space) == 1 ? H5Aread(attr, type, value) : -1;
    H5Sclose(space);
    H5Aclose(attr);
    return rc < 0 ? -1 : 0;
}
int32_t a2q_h5_attr_read_i64(int64_t location, const char *name, int64_t *value) {
    return read_scalar_attr(location, name, H5T_NATIVE_INT64, value);
}
int32_t a2q_h5_attr_read_f64(int64_t location, const char *name, double *value) {
    return read_scalar_attr(location, name, H5T_NATIVE_DOUBLE, value);
}
