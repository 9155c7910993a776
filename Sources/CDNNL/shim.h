#include <dnnl.h>
// libgomp's thread count (oneDNN's OpenMP runtime); declared here because omp.h is not on
// clang's default include path.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
