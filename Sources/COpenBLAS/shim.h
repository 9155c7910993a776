#include <cblas.h>
/* LAPACK's Fortran symbols that OpenBLAS exports (dpotrf_, dpotri_: AXE's Cholesky of H⁻¹). */
#include <f77blas.h>
