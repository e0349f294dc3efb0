/* Does this machine's OpenBLAS give the same bits for a product cut into blocks of C's rows
 * (or columns), as DLScalar.gemm cuts it (multiples of 16, the last block to the end)?
 * DLScalar.gemm fixes the cut by the shape alone so that bits do not depend on the thread
 * count; if every cut gives the same bits, the cut could follow the thread count instead
 * (fewer, larger blocks on 2 cores: W^T packed fewer times). Evidence for one machine and
 * one OpenBLAS build, not a proof.
 *
 *   cc -O2 bench/gemm_blocks.c $(pkg-config --cflags --libs openblas) -o gemm_blocks && ./gemm_blocks
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* C (m x n) = 0.37 A (m x k) B (k x n), row-major, cut into `count` blocks of rows
 * (along_rows) or columns, each one single-threaded OpenBLAS call. */
static void product(const float *a, const float *b, float *c, int m, int k, int n, int count, int along_rows) {
    const int length = along_rows ? m : n, units = (length + 15) / 16;
    for (int i = 0; i < count; i++) {
        const int lo = units * i / count * 16, hi = i + 1 == count ? length : units * (i + 1) / count * 16;
        if (lo >= hi) continue;
        if (along_rows)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hi - lo, n, k, 0.37f, a + (size_t)lo * k, k, b, n,
                        0.0f, c + (size_t)lo * n, n);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hi - lo, k, 0.37f, a, k, b + lo, n, 0.0f, c + lo, n);
    }
}

int main(void) {
    openblas_set_num_threads(1);
    static const int shapes[][3] = {{1000, 784, 128}, {64, 784, 128}, {784, 64, 128}, {1000, 128, 10}, {256, 1024, 1024},
                                    {1024, 64, 1024}, {64, 1024, 1024}, {333, 300, 137}, {130, 37, 70}, {17, 200, 300}};
    int differ = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
        float *whole = malloc(sizeof(float) * m * n), *cut = malloc(sizeof(float) * m * n);
        unsigned r = 7;
        for (int i = 0; i < m * k; i++) { r = r * 1103515245u + 12345u; a[i] = (float)((int)(r >> 9) % 2001 - 1000) / 333.0f; }
        for (int i = 0; i < k * n; i++) { r = r * 1103515245u + 12345u; b[i] = (float)((int)(r >> 9) % 2001 - 1000) / 777.0f; }
        product(a, b, whole, m, k, n, 1, 1);
        for (int along_rows = 0; along_rows < 2; along_rows++)
            for (int count = 2; count <= 8; count *= 2) {
                product(a, b, cut, m, k, n, count, along_rows);
                if (memcmp(whole, cut, sizeof(float) * m * n) != 0) {
                    printf("%dx%dx%d: %d blocks of %s differ\n", m, k, n, count, along_rows ? "rows" : "columns");
                    differ++;
                }
            }
        free(a); free(b); free(whole); free(cut);
    }
    printf(differ ? "%d cuts differ\n" : "every cut gives the same bits (%d differ)\n", differ);
    return differ != 0;
}
