/* The kernels' vector and plain C paths, built by the compiler that builds the shipped
 * library (CMake's C compiler and flags, not SwiftPM's clang): where a kernel promises the
 * same bits from both, they must agree here too. gcc ignores `#pragma STDC FP_CONTRACT OFF`
 * and, in GNU C mode, contracts a product and a sum into one fused multiply-add wherever
 * the function may use FMA; the fused pooling kernels once did, and this program is what
 * caught it (the Swift suite runs the clang build).
 *
 * Exit status 0 when every pair agrees; the first differences are printed. */
#include "dl_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state = 0x9E3779B97F4A7C15ull;

/* Values with repeats (ties before and after a ReLU) and fractions (rounding to see). */
static float value(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const unsigned r = (unsigned)(state >> 33);
    return (float)(r % 7) * 0.5f - 1.5f + (float)(r % 1000) * 1e-4f;
}

static int failures = 0;

static void same(const void *a, const void *b, size_t bytes, const char *what, int h, int w) {
    if (memcmp(a, b, bytes) != 0) {
        if (failures < 20) fprintf(stderr, "%s, %d x %d: the vector and plain C paths give other bits\n", what, h, w);
        failures++;
    }
}

int main(void) {
    static const int shapes[][2] = {{28, 28}, {14, 14}, {7, 7}, {5, 9}, {2, 34}, {6, 16}, {4, 3}, {1, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int h = shapes[s][0], w = shapes[s][1], n = h * w, pooled = (h / 2) * (w / 2);
        float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
        float *out[2], *dx[2];
        int32_t *at[2];
        for (int p = 0; p < 2; p++) {
            out[p] = malloc(sizeof(float) * (pooled + 1));
            dx[p] = malloc(sizeof(float) * n);
            at[p] = malloc(sizeof(int32_t) * (pooled + 1));
        }
        for (int i = 0; i < n; i++) x[i] = value(), dy[i] = value();
        static const float ks[] = {1.3f, -0.7f, 0.37f};
        for (int kk = 0; kk < 3; kk++) {
            const float k = ks[kk], d = 0.25f * (float)(kk - 1);
            for (int p = 0; p < 2; p++) dlk_affine_relu_max_pool_2x2_f32(x, out[p], at[p], k, d, h, w, p);
            same(out[0], out[1], sizeof(float) * pooled, "batch norm + ReLU + max pool, forward", h, w);
            same(at[0], at[1], sizeof(int32_t) * pooled, "batch norm + ReLU + max pool, argmax", h, w);
            for (int stats = 0; stats < 2; stats++) {
                for (int p = 0; p < 2; p++)
                    dlk_pooled_input_gradient_f32(x, dy, out[0], at[0], dx[p], h, w, k, 0.3f, 1.7f, 0.05f, -0.11f, stats, p);
                same(dx[0], dx[1], sizeof(float) * n, "batch norm + ReLU + max pool, input gradient", h, w);
            }
            float sums[2][2];
            for (int p = 0; p < 2; p++) dlk_pooled_gradient_sums_f32(dy, out[0], at[0], x, 0.3f, pooled, &sums[p][0], &sums[p][1], p);
            same(sums[0], sums[1], sizeof sums[0], "batch norm + ReLU + max pool, gradient sums", h, w);
        }
        /* Batch norm's plane sums, with and without a ReLU's mask. */
        float g[2][2];
        for (int p = 0; p < 2; p++) dlk_plane_gradient_sums_f32(dy, x, NULL, 0.3f, n, &g[p][0], &g[p][1], p);
        same(g[0], g[1], sizeof g[0], "plane gradient sums", h, w);
        for (int p = 0; p < 2; p++) dlk_plane_gradient_sums_f32(dy, x, x, 0.3f, n, &g[p][0], &g[p][1], p);
        same(g[0], g[1], sizeof g[0], "plane gradient sums with a mask", h, w);
        for (int p = 0; p < 2; p++) dlk_plane_shifted_sums_f32(x, 0.2f, n, &g[p][0], &g[p][1], p);
        same(g[0], g[1], sizeof g[0], "plane shifted sums", h, w);
        /* One sample's product, plain and with the affine epilogue (h rows of w inputs). */
        float y[2][28], base[28];
        for (int r = 0; r < h; r++) base[r] = value();
        for (int p = 0; p < 2; p++) dlk_matrix_vector_f32(dy, h, w, w, x, y[p], p);
        same(y[0], y[1], sizeof(float) * h, "matrix times vector", h, w);
        for (int p = 0; p < 2; p++) dlk_matrix_vector_affine_f32(dy, h, w, w, x, -0.7f, base, y[p], p);
        same(y[0], y[1], sizeof(float) * h, "matrix times vector, affine", h, w);
        for (int p = 0; p < 2; p++) free(out[p]), free(dx[p]), free(at[p]);
        free(x), free(dy);
    }
    /* Elementwise kernels and the optimizers' updates, on lengths with every tail. */
    for (int n = 1; n <= 67; n += 11) {
        float x[67], g[67], y[2][67], z[2][67];
        for (int i = 0; i < n; i++) x[i] = value() * 20, g[i] = value();
        for (int p = 0; p < 2; p++) dlk_exp_f32(x, y[p], n, p);
        same(y[0], y[1], sizeof(float) * n, "exp", 1, n);
        for (int p = 0; p < 2; p++) dlk_relu_f32(x, y[p], n, p), dlk_relu_backward_f32(x, g, z[p], n, p);
        same(y[0], y[1], sizeof(float) * n, "ReLU", 1, n);
        same(z[0], z[1], sizeof(float) * n, "ReLU's backward", 1, n);
        for (int kind = DLK_SGD; kind <= DLK_RMSPROP; kind++) {
            const dlk_update u = {kind, 3, 0.01, 0.5, 1e-4, 1e-3, 0.9, 0.9, 0.999, 0.9, 1e-8};
            float p2[2][67], s1[2][67], s2[2][67];
            for (int p = 0; p < 2; p++) {
                for (int i = 0; i < n; i++) p2[p][i] = x[i], s1[p][i] = g[i] * 0.1f, s2[p][i] = g[i] * g[i];
                dlk_update_f32(&u, p2[p], g, s1[p], s2[p], n, p);
            }
            same(p2[0], p2[1], sizeof(float) * n, "optimizer update, parameters", kind, n);
            same(s1[0], s1[1], sizeof(float) * n, "optimizer update, first state", kind, n);
            same(s2[0], s2[1], sizeof(float) * n, "optimizer update, second state", kind, n);
        }
    }
    /* The unpacked product, every tail of rows, columns and depth. */
    for (int m = 1; m <= 13; m += 4)
        for (int n = 1; n <= 37; n += 9)
            for (int k = 1; k <= 70; k += 23)
                for (int t = 0; t < 2; t++) {
                    float a[13 * 70], b[70 * 37], c[2][13 * 37];
                    for (int i = 0; i < m * k; i++) a[i] = value();
                    for (int i = 0; i < k * n; i++) b[i] = value();
                    for (int p = 0; p < 2; p++) {
                        for (int i = 0; i < m * n; i++) c[p][i] = 0.5f;
                        dlk_gemm_f32(t, m, n, k, 0.75f, a, t ? m : k, b, n, c[p], n, 1, p);
                    }
                    same(c[0], c[1], sizeof(float) * m * n, "product", m, n);
                }
    if (failures) {
        fprintf(stderr, "%d kernel results differ between the vector and plain C paths\n", failures);
        return 1;
    }
    printf("the kernels' vector and plain C paths agree to the bit\n");
    return 0;
}
