// im2col for float32 (ConvKernels.swift's Kernels.im2col has the definition): every entry
// of the columns is one element of x or a zero of the padding, so any loop gives the same
// values. The Swift loop copied each window row (14 floats in mnist_cnn's second
// convolution) with a call to memmove and two to memset; here the row is one short loop.
#include "dl_kernels.h"

// The outputs o in [0, count) whose input index o * stride + first lies in [0, size):
// [*lo, *hi). Window2D.inside's rule, which the Swift loops (float64) use.
static void inside(int64_t first, int64_t stride, int64_t size, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t l = first >= 0 ? 0 : (stride - 1 - first) / stride;
    if (l > count) l = count;
    const int64_t last = size - 1 - first;
    int64_t h = last < 0 ? 0 : last / stride + 1;
    if (h > count) h = count;
    *lo = l;
    *hi = h > l ? h : l;
}

void dlk_im2col_f32(const float *x, float *cols, int64_t batch, int64_t channels, const struct dlk_window *w,
                    int64_t row_stride, int64_t first_row, int64_t last_row) {
    const int64_t taps = w->kernel_h * w->kernel_w, in_plane = w->height * w->width, out_plane = w->out_h * w->out_w;
    for (int64_t tap_row = first_row; tap_row < last_row; tap_row++) {
        const int64_t c = tap_row / taps, i = tap_row % taps / w->kernel_w, j = tap_row % w->kernel_w;
        int64_t row_lo, row_hi, col_lo, col_hi;
        inside(i - w->pad_h, w->stride_h, w->height, w->out_h, &row_lo, &row_hi);
        inside(j - w->pad_w, w->stride_w, w->width, w->out_w, &col_lo, &col_hi);
        for (int64_t b = 0; b < batch; b++) {
            const float *plane = x + (b * channels + c) * in_plane;
            float *out = cols + tap_row * row_stride + b * out_plane;
            for (int64_t k = 0; k < row_lo * w->out_w; k++) out[k] = 0;
            for (int64_t oy = row_lo; oy < row_hi; oy++) {
                // The input index of tap (i, j) at (oy, 0); negative when ox = 0 reads padding.
                const int64_t base = (oy * w->stride_h - w->pad_h + i) * w->width - w->pad_w + j;
                float *row = out + oy * w->out_w;
                for (int64_t ox = 0; ox < col_lo; ox++) row[ox] = 0;
                if (w->stride_w == 1) {
                    const float *from = plane + base;
                    for (int64_t ox = col_lo; ox < col_hi; ox++) row[ox] = from[ox];
                } else {
                    for (int64_t ox = col_lo; ox < col_hi; ox++) row[ox] = plane[base + ox * w->stride_w];
                }
                for (int64_t ox = col_hi; ox < w->out_w; ox++) row[ox] = 0;
            }
            for (int64_t k = row_hi * w->out_w; k < out_plane; k++) out[k] = 0;
        }
    }
}

void dlk_col2im_f32(const float *dcols, float *dx, int64_t batch, int64_t channels, const struct dlk_window *w,
                    int64_t first_channel, int64_t last_channel) {
    const int64_t taps = w->kernel_h * w->kernel_w, in_plane = w->height * w->width, out_plane = w->out_h * w->out_w;
    const int64_t n = batch * out_plane;
    for (int64_t c = first_channel; c < last_channel; c++) {   // every tap of channel c adds into its planes
        for (int64_t b = 0; b < batch; b++) {
            float *plane = dx + (b * channels + c) * in_plane;
            for (int64_t k = 0; k < in_plane; k++) plane[k] = 0;
        }
        for (int64_t tap = 0; tap < taps; tap++) {
            const int64_t i = tap / w->kernel_w, j = tap % w->kernel_w;
            int64_t row_lo, row_hi, col_lo, col_hi;
            inside(i - w->pad_h, w->stride_h, w->height, w->out_h, &row_lo, &row_hi);
            inside(j - w->pad_w, w->stride_w, w->width, w->out_w, &col_lo, &col_hi);
            for (int64_t b = 0; b < batch; b++) {
                float *plane = dx + (b * channels + c) * in_plane;
                const float *src = dcols + (c * taps + tap) * n + b * out_plane;
                for (int64_t oy = row_lo; oy < row_hi; oy++) {
                    const int64_t base = (oy * w->stride_h - w->pad_h + i) * w->width - w->pad_w + j;
                    const float *row = src + oy * w->out_w;
                    if (w->stride_w == 1) {
                        float *to = plane + base;
                        for (int64_t ox = col_lo; ox < col_hi; ox++) to[ox] += row[ox];
                    } else {
                        for (int64_t ox = col_lo; ox < col_hi; ox++) plane[base + ox * w->stride_w] += row[ox];
                    }
                }
            }
        }
    }
}
