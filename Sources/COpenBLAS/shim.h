#include <cblas.h>
// Declared by OpenBLAS; used to keep its own pool to one thread while the
// engine splits GEMMs across its own workers.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_corename(void);
