import CDeepLearningKernels

/// The kernels of convolutional networks: lowering images to columns for the matrix
/// product, pooling, batch normalisation and dropout.
///
/// Images are NCHW, (batch, channels, height, width), row-major; a plane is one channel of
/// one sample. Per-channel kernels see their input as (batch, channels, spatial), with
/// spatial = H * W for images and 1 for flat features. The tests compare each kernel's layer
/// against a naive reference (CNNTests).
extension Kernels {
    /// `parallelFor` over `items` of about `cost` elements of work each: a job on the kernel
    /// threads only when each thread gets at least `minWorkPerThread` elements. Every kernel
    /// below splits by samples, planes, channels or tap rows, each computed as in one thread,
    /// so results do not depend on the number of threads.
    static func parallelFor(_ items: Int, cost: Int, _ body: (Range<Int>) -> Void) {
        let minWorkPerThread = 1 << 15
        parallelFor(items, minItemsPerThread: Swift.max(1, minWorkPerThread / Swift.max(1, cost)), body)
    }

    // MARK: Convolution lowering

    /// im2col: the columns of a convolution's matrix product.
    ///
    ///     x: (batch, C, H, W) -> cols: (C kh kw, batch OH OW)
    ///     cols[(c, i, j), (b, oy, ox)] = x[b, c, oy sh - ph + i, ox sw - pw + j], 0 in the padding
    ///
    /// Rows are taps and columns window positions, so each tap row is written in long runs
    /// (contiguous for stride 1) and one matrix product covers the whole batch. Rows of cols
    /// are `rowStride` elements apart (batch OH OW when nil): a few samples' columns can be
    /// written into the columns of a larger batch.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func im2col<T: DLScalar>(_ x: UnsafePointer<T>, _ cols: UnsafeMutablePointer<T>,
                                           batch: Int, channels: Int, _ w: Window2D, rowStride: Int? = nil) {
        let n = batch * w.outputPlane, taps = w.kernelArea, stride = rowStride ?? n
        if T.self == Float.self {   // the same values from a loop in C
            var geometry = w.geometry
            parallelFor(channels * taps, cost: n) { tapRows in
                dlk_im2col_f32(asFloats(x), asMutableFloats(cols), Int64(batch), Int64(channels), &geometry, Int64(stride),
                               Int64(tapRows.lowerBound), Int64(tapRows.upperBound))
            }
            return
        }
        parallelFor(channels * taps, cost: n) { tapRows in
            for tapRow in tapRows {   // tap (c, i, j): one row of cols
                let c = tapRow / taps, i = tapRow % taps / w.kernelWidth, j = tapRow % w.kernelWidth
                let rows = w.rows(tap: i), columns = w.columns(tap: j)
                for b in 0..<batch {
                    let plane = x + (b * channels + c) * w.inputPlane
                    let out = cols + tapRow * stride + b * w.outputPlane
                    out.update(repeating: 0, count: rows.lowerBound * w.outWidth)
                    for oy in rows {
                        // Input index of tap (i, j) at (oy, 0); negative when ox = 0 reads padding.
                        let base = (oy * w.strideHeight - w.padHeight + i) * w.width - w.padWidth + j
                        let row = out + oy * w.outWidth
                        row.update(repeating: 0, count: columns.lowerBound)
                        if w.strideWidth == 1 {
                            (row + columns.lowerBound).update(from: plane + base + columns.lowerBound, count: columns.count)
                        } else {
                            for ox in columns { row[ox] = plane[base + ox * w.strideWidth] }
                        }
                        (row + columns.upperBound).update(repeating: 0, count: w.outWidth - columns.upperBound)
                    }
                    (out + rows.upperBound * w.outWidth).update(repeating: 0, count: (w.outHeight - rows.upperBound) * w.outWidth)
                }
            }
        }
    }

    /// col2im, the adjoint of `im2col`: dx = 0, then every column entry is added back to the
    /// input element it was read from (padding entries are dropped).
    ///
    ///     dcols: (C kh kw, batch OH OW) -> dx: (batch, C, H, W)
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func col2im<T: DLScalar>(_ dcols: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>,
                                           batch: Int, channels: Int, _ w: Window2D) {
        let n = batch * w.outputPlane, taps = w.kernelArea
        if T.self == Float.self {   // the same sums, in the same order, from a loop in C
            var geometry = w.geometry
            parallelFor(channels, cost: n * taps) { channelRange in
                dlk_col2im_f32(asFloats(dcols), asMutableFloats(dx), Int64(batch), Int64(channels), &geometry,
                               Int64(channelRange.lowerBound), Int64(channelRange.upperBound))
            }
            return
        }
        parallelFor(channels, cost: n * taps) { channelRange in
            for c in channelRange {   // every tap of channel c adds into the planes of channel c
                for b in 0..<batch { (dx + (b * channels + c) * w.inputPlane).update(repeating: 0, count: w.inputPlane) }
                for tap in 0..<taps {
                    let i = tap / w.kernelWidth, j = tap % w.kernelWidth
                    let rows = w.rows(tap: i), columns = w.columns(tap: j)
                    for b in 0..<batch {
                        let plane = dx + (b * channels + c) * w.inputPlane
                        let src = dcols + (c * taps + tap) * n + b * w.outputPlane
                        for oy in rows {
                            let base = (oy * w.strideHeight - w.padHeight + i) * w.width - w.padWidth + j
                            let row = src + oy * w.outWidth
                            if w.strideWidth == 1 {
                                let to = plane + base + columns.lowerBound, from = row + columns.lowerBound
                                for k in 0..<columns.count { to[k] += from[k] }
                            } else {
                                for ox in columns { plane[base + ox * w.strideWidth] += row[ox] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rearranges a product's channel-major result into samples, adding a bias per channel:
    ///
    ///     src: (C, batch P) -> y: (batch, C, P),  y[b, c, p] = src[c, b P + p] + bias[c]
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func columnsToSamples<T: DLScalar>(_ src: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, bias: UnsafePointer<T>?,
                                                     batch: Int, channels: Int, plane: Int) {
        forEachPlane(batch: batch, channels: channels, plane: plane) { b, c, offset in
            let from = src + c * batch * plane + b * plane, to = y + offset, add = bias?[c] ?? 0
            for p in 0..<plane { to[p] = from[p] + add }
        }
    }

    /// y[c, p] += bias[c] for one sample's (C, P) planes, on this thread.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func addPerChannel<T: DLScalar>(_ bias: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, channels: Int, plane: Int) {
        for c in 0..<channels {
            let (to, add) = (y + c * plane, bias[c])
            for p in 0..<plane { to[p] += add }
        }
    }

    /// The inverse rearrangement, without bias: x: (batch, C, P) -> dst: (C, batch P).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func samplesToColumns<T: DLScalar>(_ x: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                                     batch: Int, channels: Int, plane: Int) {
        forEachPlane(batch: batch, channels: channels, plane: plane) { b, c, offset in
            dlk_copy(dst + c * batch * plane + b * plane, x + offset, Int64(plane * MemoryLayout<T>.stride))
        }
    }

    // MARK: Pooling (over `planes` = batch * channels planes)

    /// y = the maximum of each window, padding never winning; `argmax` gets each maximum's
    /// index within its input plane (the first on ties), for backward. Every window must
    /// hold at least one input element (padding at most half the kernel).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func maxPool2d<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, argmax: UnsafeMutablePointer<Int32>,
                                              planes: Int, _ w: Window2D) {
        parallelFor(planes, cost: w.outputPlane * w.kernelArea) { planeRange in
            for q in planeRange {
                maxPoolPlane(x + q * w.inputPlane, out: y + q * w.outputPlane, argmax: argmax + q * w.outputPlane, w)
            }
        }
    }

    /// `maxPool2d` of one plane.
    @inline(__always)
    private static func maxPoolPlane<T: DLScalar>(_ plane: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                                  argmax index: UnsafeMutablePointer<Int32>, _ w: Window2D) {
        if w.isPairwise {   // 2x2 windows side by side: the loop below, unrolled
            for oy in 0..<w.outHeight {
                let upper = 2 * oy * w.width, lower = upper + w.width
                for ox in 0..<w.outWidth {
                    var best = upper + 2 * ox, top = plane[best]
                    func visit(_ i: Int) {
                        let v = plane[i], wins = v > top
                        top = wins ? v : top
                        best = wins ? i : best
                    }
                    visit(upper + 2 * ox + 1)
                    visit(lower + 2 * ox)
                    visit(lower + 2 * ox + 1)
                    out[oy * w.outWidth + ox] = top
                    index[oy * w.outWidth + ox] = Int32(best)
                }
            }
            return
        }
        for oy in 0..<w.outHeight {
            let rows = w.inputRows(window: oy)
            for ox in 0..<w.outWidth {
                let columns = w.inputColumns(window: ox)
                // Selects rather than branches: which element wins is data-dependent, and
                // mispredicted branches made this loop several times slower.
                var best = rows.lowerBound * w.width + columns.lowerBound, top = plane[best]
                for iy in rows {
                    for ix in columns {
                        let i = iy * w.width + ix, v = plane[i], wins = v > top
                        top = wins ? v : top
                        best = wins ? i : best
                    }
                }
                out[oy * w.outWidth + ox] = top
                index[oy * w.outWidth + ox] = Int32(best)
            }
        }
    }

    /// dx = 0, then each dy goes to the input element its window's maximum came from.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func maxPool2dBackward<T: DLScalar>(_ dy: UnsafePointer<T>, argmax: UnsafePointer<Int32>, _ dx: UnsafeMutablePointer<T>,
                                                      planes: Int, _ w: Window2D) {
        parallelFor(planes, cost: w.inputPlane) { planeRange in
            for q in planeRange {
                let plane = dx + q * w.inputPlane
                plane.update(repeating: 0, count: w.inputPlane)
                let g = dy + q * w.outputPlane, index = argmax + q * w.outputPlane
                for o in 0..<w.outputPlane { plane[Int(index[o])] += g[o] }
            }
        }
    }

    /// y = the mean of each window, padding counting as zeros (divisor kh kw always, as
    /// PyTorch's default count_include_pad).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func avgPool2d<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, planes: Int, _ w: Window2D) {
        let scale = 1 / T(w.kernelArea)
        for q in 0..<planes {
            let plane = x + q * w.inputPlane, out = y + q * w.outputPlane
            for oy in 0..<w.outHeight {
                let rows = w.inputRows(window: oy)
                for ox in 0..<w.outWidth {
                    let columns = w.inputColumns(window: ox)
                    var total: T = 0
                    for iy in rows { for ix in columns { total += plane[iy * w.width + ix] } }
                    out[oy * w.outWidth + ox] = total * scale
                }
            }
        }
    }

    /// dx = 0, then each dy / (kh kw) is added to every input element of its window.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func avgPool2dBackward<T: DLScalar>(_ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, planes: Int, _ w: Window2D) {
        dx.update(repeating: 0, count: planes * w.inputPlane)
        let scale = 1 / T(w.kernelArea)
        for q in 0..<planes {
            let plane = dx + q * w.inputPlane, g = dy + q * w.outputPlane
            for oy in 0..<w.outHeight {
                let rows = w.inputRows(window: oy)
                for ox in 0..<w.outWidth {
                    let columns = w.inputColumns(window: ox)
                    let share = g[oy * w.outWidth + ox] * scale
                    for iy in rows { for ix in columns { plane[iy * w.width + ix] += share } }
                }
            }
        }
    }

    // MARK: Per-channel statistics and batch normalisation, x: (batch, C, S)

    /// The sum of term(0) ..< term(n), in four interleaved running sums: independent chains
    /// run several times faster than one, and the order is fixed, so results reproduce.
    @inline(__always)
    static func sum<T: DLScalar>(_ n: Int, _ term: (Int) -> T) -> T {
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0
        var i = 0
        while i + 4 <= n {
            s0 += term(i); s1 += term(i + 1); s2 += term(i + 2); s3 += term(i + 3)
            i += 4
        }
        while i < n { s0 += term(i); i += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// `sum` of two series at once, each in the same four chains (the same bits as two calls
    /// of `sum`), so that a pass over memory feeds both.
    @inline(__always)
    static func sums<T: DLScalar>(_ n: Int, _ term: (Int) -> (T, T)) -> (T, T) {
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0, t0: T = 0, t1: T = 0, t2: T = 0, t3: T = 0
        var i = 0
        while i + 4 <= n {
            let a = term(i), b = term(i + 1), c = term(i + 2), d = term(i + 3)
            s0 += a.0; s1 += b.0; s2 += c.0; s3 += d.0
            t0 += a.1; t1 += b.1; t2 += c.1; t3 += d.1
            i += 4
        }
        while i < n { let a = term(i); s0 += a.0; t0 += a.1; i += 1 }
        return ((s0 + s1) + (s2 + s3), (t0 + t1) + (t2 + t3))
    }

    /// out[c] = the sum over b, in order, of run(c, offset of (b, c)): a per-channel
    /// reduction, channels on the kernel threads, each summed as on one thread.
    @inline(__always)
    static func sumPerChannel<T: DLScalar>(into out: UnsafeMutablePointer<T>, batch: Int, channels: Int, spatial: Int,
                                           _ run: (_ c: Int, _ offset: Int) -> T) {
        parallelFor(channels, cost: batch * spatial) { channelRange in
            for c in channelRange {
                var total: T = 0
                for b in 0..<batch { total += run(c, (b * channels + c) * spatial) }
                out[c] = total
            }
        }
    }

    /// body(b, c, offset of (b, c)) for every sample b and channel c, samples on the kernel
    /// threads: the per-plane maps and rearrangements.
    @inline(__always)
    static func forEachPlane(batch: Int, channels: Int, plane: Int, _ body: (_ b: Int, _ c: Int, _ offset: Int) -> Void) {
        parallelFor(batch, cost: channels * plane) { samples in
            for b in samples {
                for c in 0..<channels { body(b, c, (b * channels + c) * plane) }
            }
        }
    }

    /// Planes this long and longer (float32) go to the C kernels; a call per shorter plane
    /// (flat features are planes of one value) would cost more than its sum.
    static let minCPlane = 64

    /// The sum of a plane's n values: float32 planes of `minCPlane` and more in the C
    /// kernel's 32 chains, others in `sum`'s four.
    @inline(__always)
    static func planeSum<T: DLScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
        if T.self == Float.self, n >= minCPlane { return T(dlk_plane_sum_f32(asFloats(x), Int64(n), 0)) }
        return sum(n) { x[$0] }
    }

    /// The sum of (x - m)^2 over a plane's n values, as `planeSum` sums.
    @inline(__always)
    static func planeSquaredDeviations<T: DLScalar>(_ x: UnsafePointer<T>, _ m: T, _ n: Int) -> T {
        if T.self == Float.self, n >= minCPlane { return T(dlk_plane_squared_deviations_f32(asFloats(x), Float(m), Int64(n), 0)) }
        return sum(n) { (x[$0] - m) * (x[$0] - m) }
    }

    /// out[c] = sum of x[b, c, s] over b and s.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func channelSums<T: DLScalar>(_ x: UnsafePointer<T>, _ out: UnsafeMutablePointer<T>, batch: Int, channels: Int, spatial: Int) {
        sumPerChannel(into: out, batch: batch, channels: channels, spatial: spatial) { _, offset in
            planeSum(x + offset, spatial)
        }
    }

    /// Per-channel mean and biased variance (divided by N = batch S) over b and s.
    ///
    /// Two passes: the mean, then the sum of squared deviations from it. With `shift` (a value
    /// per channel expected near its mean, such as batch norm's running mean; float32 planes of
    /// `minCPlane` values and more), one pass first: the sums of d = x - k and of d^2, so
    /// mean = k + S1/N and variance = S2/N - (S1/N)^2, which loses log2(1 + (S1/N)^2 / variance)
    /// bits to cancellation; a channel that would lose more than 2 (its mean more than sqrt(3)
    /// standard deviations from k, as on the first steps, when the running mean is still 0) or
    /// whose sums are not finite takes the two passes. A pass over a tensor of several
    /// megabytes waits for memory, so the one pass saves most of the second's time.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func channelMeanVariance<T: DLScalar>(_ x: UnsafePointer<T>, mean: UnsafeMutablePointer<T>, variance: UnsafeMutablePointer<T>,
                                                        batch: Int, channels: Int, spatial: Int, shift: UnsafePointer<T>? = nil) {
        let inv = 1 / T(batch * spatial)
        parallelFor(channels, cost: batch * spatial) { channelRange in
            for c in channelRange {
                func plane(_ b: Int) -> UnsafePointer<T> { x + (b * channels + c) * spatial }
                if T.self == Float.self, spatial >= minCPlane, let shift {
                    let k = Float(shift[c]), n = Float(inv)
                    var s1: Float = 0, s2: Float = 0
                    for b in 0..<batch {
                        var d: Float = 0, d2: Float = 0
                        dlk_plane_shifted_sums_f32(asFloats(plane(b)), k, Int64(spatial), &d, &d2, 0)
                        s1 += d
                        s2 += d2
                    }
                    let offset = s1 * n, v = s2 * n - offset * offset
                    if offset.isFinite, v.isFinite, offset * offset <= 3 * v {
                        (mean[c], variance[c]) = (T(k + offset), T(v))
                        continue
                    }
                }
                var total: T = 0
                for b in 0..<batch { total += planeSum(plane(b), spatial) }
                let m = total * inv
                var squares: T = 0
                for b in 0..<batch { squares += planeSquaredDeviations(plane(b), m, spatial) }
                (mean[c], variance[c]) = (m, squares * inv)
            }
        }
    }

    /// Batch norm's per-channel coefficients, so that y = x scale + shift:
    ///
    ///     invStd = 1 / sqrt(variance + eps)   scale = gamma invStd   shift = beta - mean scale
    ///
    /// (gamma 1 and beta 0 when nil).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func batchNormCoefficients<T: DLScalar>(mean: UnsafePointer<T>, variance: UnsafePointer<T>,
                                                          gamma: UnsafePointer<T>?, beta: UnsafePointer<T>?, eps: T,
                                                          invStd: UnsafeMutablePointer<T>, scale: UnsafeMutablePointer<T>,
                                                          shift: UnsafeMutablePointer<T>, channels: Int) {
        for c in 0..<channels {
            invStd[c] = 1 / T.sqrt(variance[c] + eps)
            scale[c] = (gamma?[c] ?? 1) * invStd[c]
            shift[c] = (beta?[c] ?? 0) - mean[c] * scale[c]
        }
    }

    /// y[b, c, s] = x[b, c, s] scale[c] + shift[c]   (shift 0 when nil); with `relu`, then
    /// max(0, y) as the ReLU layer computes it (`y > 0 ? y : 0`).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func channelAffine<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>,
                                                  scale: UnsafePointer<T>, shift: UnsafePointer<T>?,
                                                  batch: Int, channels: Int, spatial: Int, relu: Bool = false) {
        forEachPlane(batch: batch, channels: channels, plane: spatial) { _, c, offset in
            let from = x + offset, to = y + offset, k = scale[c], d = shift?[c] ?? 0
            if relu {
                for i in 0..<spatial { let v = from[i] * k + d; to[i] = v > 0 ? v : 0 }
            } else {
                for i in 0..<spatial { to[i] = from[i] * k + d }
            }
        }
    }

    /// An exponential moving average: running = (1 - momentum) running + momentum factor value.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func movingAverage<T: DLScalar>(_ running: UnsafeMutablePointer<T>, _ value: UnsafePointer<T>, _ n: Int,
                                                  momentum: T, factor: T) {
        for i in 0..<n { running[i] = (1 - momentum) * running[i] + momentum * factor * value[i] }
    }

    /// Batch norm's backward pass, with xhat = (x - mean) invStd recomputed from x:
    ///
    ///     sumDy[c] = sum dy          (dbeta)      sumDyXhat[c] = sum dy xhat      (dgamma)
    ///     batch statistics:  dx = scale (dy - sumDy / N - xhat sumDyXhat / N),  N = batch S
    ///     fixed statistics:  dx = scale dy
    ///
    /// where scale = gamma invStd. dx is skipped when nil. With `mask` (the output of a
    /// forward pass that applied ReLU), dy is first that ReLU's backward pass, `mask > 0 ?
    /// dy : 0`, the same values the ReLU layer would have handed over.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func batchNormBackward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>?,
                                                      mean: UnsafePointer<T>, invStd: UnsafePointer<T>, scale: UnsafePointer<T>,
                                                      sumDy: UnsafeMutablePointer<T>, sumDyXhat: UnsafeMutablePointer<T>,
                                                      batchStatistics: Bool, batch: Int, channels: Int, spatial: Int,
                                                      mask: UnsafePointer<T>? = nil) {
        // One pass over dy and x for both sums: float32 planes of `minCPlane` and more in the C
        // kernel (which applies the mask itself), others in `sums`' four chains.
        parallelFor(channels, cost: 2 * batch * spatial) { channelRange in
            for c in channelRange {
                let m = mean[c], s = invStd[c]
                var totalDy: T = 0, totalDyXhat: T = 0
                for b in 0..<batch {
                    let offset = (b * channels + c) * spatial, xr = x + offset, dyr = dy + offset
                    let (planeDy, planeDyXc): (T, T)
                    if T.self == Float.self, spatial >= minCPlane {
                        var (a, b): (Float, Float) = (0, 0)
                        dlk_plane_gradient_sums_f32(asFloats(dyr), asFloats(xr), mask.map { asFloats($0 + offset) }, Float(m),
                                                    Int64(spatial), &a, &b, 0)
                        (planeDy, planeDyXc) = (T(a), T(b))
                    } else if let mr = mask.map({ $0 + offset }) {
                        (planeDy, planeDyXc) = sums(spatial) { i in
                            let d = dyr[i], g = mr[i] > 0 ? d : 0   // both loads first: a select, not a branch
                            return (g, g * (xr[i] - m))
                        }
                    } else {
                        (planeDy, planeDyXc) = sums(spatial) { i in (dyr[i], dyr[i] * (xr[i] - m)) }
                    }
                    totalDy += planeDy
                    totalDyXhat += planeDyXc * s
                }
                sumDy[c] = totalDy
                sumDyXhat[c] = totalDyXhat
            }
        }
        guard let dx else { return }
        let inv = 1 / T(batch * spatial)
        // A loop per case: a test of `mask` inside one loop kept it scalar.
        forEachPlane(batch: batch, channels: channels, plane: spatial) { _, c, offset in
            let xr = x + offset, dyr = dy + offset, dxr = dx + offset, k = scale[c]
            let m = mean[c], s = invStd[c], meanDy = sumDy[c] * inv, meanDyXhat = sumDyXhat[c] * inv
            switch (mask.map { $0 + offset }, batchStatistics) {
            case (nil, false): for i in 0..<spatial { dxr[i] = dyr[i] * k }
            case (let mr?, false): for i in 0..<spatial { let d = dyr[i]; dxr[i] = (mr[i] > 0 ? d : 0) * k }
            case (nil, true): for i in 0..<spatial { dxr[i] = k * (dyr[i] - meanDy - (xr[i] - m) * s * meanDyXhat) }
            case (let mr?, true):
                for i in 0..<spatial { let d = dyr[i]; dxr[i] = k * ((mr[i] > 0 ? d : 0) - meanDy - (xr[i] - m) * s * meanDyXhat) }
            }
        }
    }

    // MARK: Batch norm, ReLU and 2x2 max pooling as one pass

    /// Batch norm's affine pass, ReLU and 2x2 max pooling (stride 2, no padding,
    /// `Window2D.isPairwise`) in one pass over x, the ReLU's output never stored:
    ///
    ///     out[o] = max over window o of max(0, x scale + shift)
    ///     argmax[o] = the plane index of the first element with that value
    ///
    /// each value computed as `channelAffine` computes it, the windows visited as
    /// `maxPool2d` visits them: the same bits and the same ties as the three layers apart.
    /// No argmax when nil (evaluation).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func affineReLUMaxPool2x2<T: DLScalar>(_ x: UnsafePointer<T>, _ out: UnsafeMutablePointer<T>,
                                                         argmax: UnsafeMutablePointer<Int32>?,
                                                         scale: UnsafePointer<T>, shift: UnsafePointer<T>?,
                                                         batch: Int, channels: Int, _ w: Window2D) {
        parallelFor(batch * channels, cost: w.inputPlane) { planes in
            for q in planes {
                let c = q % channels, k = scale[c], d = shift?[c] ?? 0
                let plane = x + q * w.inputPlane, o = out + q * w.outputPlane
                if T.self == Float.self {   // the C kernel's selects (Swift's loop branched, and missed)
                    dlk_affine_relu_max_pool_2x2_f32(asFloats(plane), asMutableFloats(o), argmax.map { $0 + q * w.outputPlane },
                                                     Float(k), Float(d), Int64(w.height), Int64(w.width), 0)
                    continue
                }
                @inline(__always) func z(_ i: Int) -> T { let v = plane[i] * k + d; return v > 0 ? v : 0 }
                for oy in 0..<w.outHeight {
                    let upper = 2 * oy * w.width, lower = upper + w.width, row = oy * w.outWidth
                    for ox in 0..<w.outWidth {
                        var best = upper + 2 * ox, top = z(best)
                        @inline(__always) func visit(_ i: Int) {
                            let v = z(i), wins = v > top
                            top = wins ? v : top
                            best = wins ? i : best
                        }
                        visit(upper + 2 * ox + 1)
                        visit(lower + 2 * ox)
                        visit(lower + 2 * ox + 1)
                        o[row + ox] = top
                        argmax?[q * w.outputPlane + row + ox] = Int32(best)
                    }
                }
            }
        }
    }

    /// The backward pass of batch norm, ReLU and 2x2 max pooling run as
    /// `affineReLUMaxPool2x2`, from dy, the gradient of the pooled output `out`:
    ///
    ///     dz = dy[o] at argmax[o] when out[o] > 0 (the ReLU's mask there), else 0
    ///     sumDy[c] = sum dz      sumDyXhat[c] = sum dz xhat      (over the windows' maxima)
    ///     dx = scale (dz - sumDy / N - xhat sumDyXhat / N)    with batch statistics
    ///     dx = scale dz                                        with fixed ones
    ///
    /// the same values as `maxPool2dBackward` and `batchNormBackward` with the ReLU's mask;
    /// the sums add only the maxima's terms (the others are zeros), in another order, so
    /// they may differ from the layers apart in the last bits. dx (all of x's elements,
    /// those no window covers too) is skipped when nil.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func batchNormReLUMaxPool2x2Backward<T: DLScalar>(
        _ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, out: UnsafePointer<T>, argmax: UnsafePointer<Int32>,
        _ dx: UnsafeMutablePointer<T>?, mean: UnsafePointer<T>, invStd: UnsafePointer<T>, scale: UnsafePointer<T>,
        sumDy: UnsafeMutablePointer<T>, sumDyXhat: UnsafeMutablePointer<T>, batchStatistics: Bool,
        batch: Int, channels: Int, _ w: Window2D
    ) {
        parallelFor(channels, cost: 2 * batch * w.outputPlane) { channelRange in
            for c in channelRange {
                let m = mean[c], s = invStd[c]
                var totalDy: T = 0, totalDyXhat: T = 0
                for b in 0..<batch {
                    let q = b * channels + c, plane = x + q * w.inputPlane
                    let g = dy + q * w.outputPlane, top = out + q * w.outputPlane, at = argmax + q * w.outputPlane
                    let (planeDy, planeDyXc): (T, T)
                    if T.self == Float.self {
                        var (a, b): (Float, Float) = (0, 0)
                        dlk_pooled_gradient_sums_f32(asFloats(g), asFloats(top), at, asFloats(plane), Float(m),
                                                     Int64(w.outputPlane), &a, &b, 0)
                        (planeDy, planeDyXc) = (T(a), T(b))
                    } else {
                        (planeDy, planeDyXc) = sums(w.outputPlane) { o in
                            let d = g[o], dz = top[o] > 0 ? d : 0
                            return (dz, dz * (plane[Int(at[o])] - m))
                        }
                    }
                    totalDy += planeDy
                    totalDyXhat += planeDyXc * s
                }
                sumDy[c] = totalDy
                sumDyXhat[c] = totalDyXhat
            }
        }
        guard let dx else { return }
        let inv = 1 / T(batch * w.inputPlane)
        parallelFor(batch * channels, cost: w.inputPlane) { planes in
            for q in planes {
                let c = q % channels, k = scale[c]
                let m = mean[c], s = invStd[c], meanDy = sumDy[c] * inv, meanDyXhat = sumDyXhat[c] * inv
                let xr = x + q * w.inputPlane, dxr = dx + q * w.inputPlane
                let g = dy + q * w.outputPlane, top = out + q * w.outputPlane, at = argmax + q * w.outputPlane
                if T.self == Float.self {
                    dlk_pooled_input_gradient_f32(asFloats(xr), asFloats(g), asFloats(top), at, asMutableFloats(dxr),
                                                  Int64(w.height), Int64(w.width), Float(k), Float(m), Float(s),
                                                  Float(meanDy), Float(meanDyXhat), batchStatistics ? 1 : 0, 0)
                    continue
                }
                // Every element as if its dz were 0, then each window's maximum again with its dz.
                @inline(__always) func gradient(_ dz: T, _ i: Int) -> T {
                    batchStatistics ? k * (dz - meanDy - (xr[i] - m) * s * meanDyXhat) : dz * k
                }
                for i in 0..<w.inputPlane { dxr[i] = gradient(0, i) }
                for o in 0..<w.outputPlane {
                    let i = Int(at[o]), d = g[o]
                    dxr[i] = gradient(top[o] > 0 ? d : 0, i)
                }
            }
        }
    }

    // MARK: Dropout

    /// An inverted-dropout mask: each of n entries is 0 with probability `rate`, else
    /// 1 / (1 - rate), from one draw of `rng` per entry in order.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func dropoutMask<T: DLScalar>(_ mask: UnsafeMutablePointer<T>, _ n: Int, rate: Double, rng: inout RandomGenerator) {
        let keep = 1 / T(1 - rate)
        // uniform() < rate compared on the draw's 53 bits u (uniform() is u 2^-53, exact):
        // u < rate 2^53 exactly when u < ceil(rate 2^53), with no conversion per entry.
        let below = UInt64((rate * 0x1.0p53).rounded(.up))
        var generator = rng
        for i in 0..<n { mask[i] = generator.next() >> 11 < below ? 0 : keep }
        rng = generator
    }

    /// y = a * b elementwise.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func multiply<T: DLScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        for i in 0..<n { y[i] = a[i] * b[i] }
    }
}
