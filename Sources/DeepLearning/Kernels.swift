import CDeepLearningKernels
import RealModule

/// Every numeric loop of the library, on raw pointers.
///
/// Layers and losses call these instead of writing loops of their own (optimizer updates
/// are in C, optimizers.c). Each kernel is generic and carries `@_specialize` for `Float`
/// and `Double`: a model is used through an existential (`any Layer<T>`), where
/// unspecialised generic arithmetic is several times slower (bench/README.md has the
/// figure); the attribute makes the generic entry point jump to the specialised body. Shapes are row-major, `rows` samples by `cols` features.
public enum Kernels {
    /// Threads the C kernels use (the caller included): 1 to 8, by default `DL_NUM_THREADS`,
    /// else one per available CPU, less one left to the batch loader when there are three or
    /// more (see `dlk_threads`). Results do not depend on it.
    public static var threads: Int {
        get { Int(dlk_threads()) }
        set { dlk_set_threads(Int32(clamping: newValue)) }
    }

    /// Runs `body` over items 0..<items on the kernel threads (`dlk_parallel_for`): each
    /// thread gets one contiguous range, fixed by the item and thread counts, and `body`
    /// must give the same results whatever range it is handed.
    static func parallelFor(_ items: Int, minItemsPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        parallelShares(items, minItemsPerThread: minItemsPerThread) { range, _ in body(range) }
    }

    /// Whether `dlk_parallel_for` would run all `items` as one share on the calling thread
    /// for want of work (fewer than two threads' minimum): then `parallelShares` runs `body`
    /// itself, without wrapping it for C (two heap blocks a call, and a ReLU on a
    /// single sample's 128 values is a few dozen instructions).
    @inline(__always)
    private static func oneShare(_ items: Int, _ minItemsPerThread: Int) -> Bool {
        items / Swift.max(minItemsPerThread, 1) < 2
    }

    /// `parallelFor` whose body also gets its share's index, below `min(items, maxShares)`:
    /// no two shares with the same index run at once, so a share can use scratch space of
    /// its own (slot `share` of `maxShares`).
    static func parallelShares(_ items: Int, minItemsPerThread: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        if oneShare(items, minItemsPerThread) { return items > 0 ? body(0..<items, 0) : () }
        withoutActuallyEscaping(body) { body in
            var task = body
            withUnsafeMutablePointer(to: &task) { context in
                _ = dlk_parallel_for(Int64(items), Int64(minItemsPerThread), { context, begin, end, share in
                    context!.assumingMemoryBound(to: ((Range<Int>, Int) -> Void).self).pointee(Int(begin)..<Int(end), Int(share))
                }, context)
            }
        }
    }

    /// The most shares `parallelShares` hands out (DLK_MAX_THREADS).
    static let maxShares = Int(DLK_MAX_THREADS)

    /// A float32 array seen as such, for the C kernels (callers check T == Float).
    @inline(__always)
    static func asFloats<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    /// `asFloats` for an array the kernel writes.
    @inline(__always)
    static func asMutableFloats<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    /// C = alpha op(A) B (row-major, float32; op(A) = A^T with `transA`) with the library's
    /// own AVX-512 or AVX2/FMA kernel, which reads A and B where they are (`dlk_gemm_f32`: no packed
    /// copies, unlike OpenBLAS), C's rows handed out to the kernel threads in blocks (or
    /// all on this thread when it runs inside another kernel job). Every output is the same
    /// chain of multiply-adds whatever the split, so the bits do not depend on the thread
    /// count. False, with nothing written, for float64, where the CPU lacks AVX2/FMA, or for
    /// a product OpenBLAS was measured faster on (`dlk_gemm_parallel_takes`: C wider than
    /// `DLK_GEMM_MAX_COLUMNS`, or many rows of a stored A with the AVX2 kernel): the caller
    /// then takes BLAS.
    static func unpackedGemm<T: DLScalar>(transA: Bool = false, m: Int, n: Int, k: Int, alpha: T, a: UnsafePointer<T>,
                                          lda: Int, b: UnsafePointer<T>, ldb: Int, c: UnsafeMutablePointer<T>,
                                          ldc: Int) -> Bool {
        guard T.self == Float.self else { return false }
        return dlk_gemm_parallel_f32(transA ? 1 : 0, Int64(m), Int64(n), Int64(k), Float(alpha), asFloats(a), Int64(lda), asFloats(b),
                                     Int64(ldb), UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self),
                                     Int64(ldc), Int64(GemmBlocks.minWork)) != 0
    }

    /// Whether `unpackedGemmOnThisThread` computes T's products on this CPU: float32 with
    /// AVX2/FMA (elsewhere the plain C loop would be far slower than BLAS).
    static func hasUnpackedGemm<T: DLScalar>(_: T.Type) -> Bool { T.self == Float.self && dlk_has_avx2() != 0 }

    /// C = op(A) B as `unpackedGemm` (C += op(A) B with `accumulate`: the product's blocks of
    /// sums are added to C's value), on this thread, at any width: for a kernel job's piece of a larger product
    /// (the convolutions'), whose operands are in the core's cache. False, with nothing
    /// written, unless `hasUnpackedGemm(T.self)`.
    @discardableResult
    static func unpackedGemmOnThisThread<T: DLScalar>(transA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<T>,
                                                      lda: Int, b: UnsafePointer<T>, ldb: Int,
                                                      c: UnsafeMutablePointer<T>, ldc: Int,
                                                      accumulate: Bool = false) -> Bool {
        guard hasUnpackedGemm(T.self) else { return false }
        dlk_gemm_f32(transA ? 1 : 0, Int64(m), Int64(n), Int64(k), 1, asFloats(a), Int64(lda), asFloats(b), Int64(ldb),
                     UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), Int64(ldc), accumulate ? 1 : 0, 0)
        return true
    }

    // MARK: Copies and conversions

    /// dst (cols x rows) = src^T for src (rows x cols), both dense: float32 in C
    /// (`dlk_transpose_f32`), row blocks of src on the kernel threads when it is large (on
    /// this thread alone inside a kernel job).
    static func transpose<T: DLScalar>(_ src: UnsafePointer<T>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<T>) {
        guard T.self == Float.self else {
            for i in 0..<rows { for j in 0..<cols { dst[j * rows + i] = src[i * cols + j] } }
            return
        }
        let (s, d) = (asFloats(src), asMutableFloats(dst))
        let blocks = rows * cols >= 1 << 16 ? max(1, min(8, rows / 8)) : 1
        parallelFor(blocks) { range in
            for block in range {
                let first = rows * block / blocks, last = rows * (block + 1) / blocks
                dlk_transpose_f32(Int64(last - first), Int64(cols), s + first * cols, Int64(cols), d + first, Int64(rows), 0)
            }
        }
    }

    @_specialize(where S == Float, D == Float) @_specialize(where S == Float, D == Double)
    @_specialize(where S == Double, D == Float) @_specialize(where S == Double, D == Double)
    public static func convert<S: DLScalar, D: DLScalar>(_ src: UnsafePointer<S>, _ dst: UnsafeMutablePointer<D>, _ n: Int) {
        for i in 0..<n { dst[i] = D(src[i]) }
    }

    /// dst = D(src) * a + b, converting type (input preprocessing): two roundings, no fused
    /// multiply-add. Float32 results come from C (`dlk_affine_f32`, which the batch gather
    /// uses too), float64 ones from the loop here.
    @_specialize(where S == Float, D == Float) @_specialize(where S == Float, D == Double)
    @_specialize(where S == Double, D == Float) @_specialize(where S == Double, D == Double)
    public static func convertAffine<S: DLScalar, D: DLScalar>(_ src: UnsafePointer<S>, _ dst: UnsafeMutablePointer<D>, _ n: Int, _ a: D, _ b: D) {
        if D.self == Float.self {
            let out = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
            if S.self == Float.self {
                dlk_affine_f32(UnsafeRawPointer(src).assumingMemoryBound(to: Float.self), out, Int64(n), Float(a), Float(b))
            } else {
                convert(src, out, n)
                dlk_affine_f32(out, out, Int64(n), Float(a), Float(b))
            }
            return
        }
        for i in 0..<n { dst[i] = D(src[i]) * a + b }
    }

    /// True when every element is finite (no NaN, no infinity).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func allFinite<T: DLScalar>(_ x: UnsafePointer<T>, _ n: Int) -> Bool {
        // The exponent bits, tested in C, where the loop vectorises (see dl_kernels.h).
        if T.self == Float.self {
            return dlk_all_finite_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), Int64(n)) != 0
        }
        if T.self == Double.self {
            return dlk_all_finite_f64(UnsafeRawPointer(x).assumingMemoryBound(to: Double.self), Int64(n)) != 0
        }
        // An OR of comparisons, with no early exit and no floating-point sum (which the
        // compiler may not reorder), so the loop vectorises. NaN compares false, so it counts.
        var bad: UInt8 = 0
        for i in 0..<n { bad |= x[i].magnitude <= T.greatestFiniteMagnitude ? 0 : 1 }
        return bad == 0
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func fill<T: DLScalar>(_ x: UnsafeMutablePointer<T>, _ n: Int, _ value: T) {
        x.update(repeating: value, count: n)
    }

    // MARK: Linear algebra helpers

    /// y[i] += x[i]
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func add<T: DLScalar>(_ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// y[r, c] += b[c]
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func addRowVector<T: DLScalar>(_ y: UnsafeMutablePointer<T>, _ b: UnsafePointer<T>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let row = y + r * cols
            for c in 0..<cols { row[c] += b[c] }
        }
    }

    /// db[c] = sum over r of dy[r, c]   (or += when `accumulate`)
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func sumRows<T: DLScalar>(_ dy: UnsafePointer<T>, _ db: UnsafeMutablePointer<T>, rows: Int, cols: Int, accumulate: Bool = false) {
        if !accumulate { db.update(repeating: 0, count: cols) }
        for r in 0..<rows {
            let row = dy + r * cols
            for c in 0..<cols { db[c] += row[c] }
        }
    }

    /// Index of the largest element of each row (the first one on ties).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func argmaxRows<T: DLScalar>(_ x: UnsafePointer<T>, rows: Int, cols: Int, _ out: UnsafeMutablePointer<Int32>) {
        for r in 0..<rows {
            let row = x + r * cols
            var best = 0
            for c in 1..<max(cols, 1) where row[c] > row[best] { best = c }
            out[r] = Int32(best)
        }
    }

    /// The rows of x (rows x cols) whose largest entry (the first of equal ones) is at the
    /// row's class: its label, or the largest entry of the same row of target values. What
    /// accuracy counts, in evaluation and in training.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func countArgmaxMatches<T: DLScalar>(_ x: UnsafePointer<T>, rows: Int, cols: Int,
                                                       _ targets: Targets<T>) -> Int {
        func argmax(_ row: UnsafePointer<T>) -> Int {
            var best = 0
            for c in 1..<max(cols, 1) where row[c] > row[best] { best = c }
            return best
        }
        var count = 0
        for r in 0..<rows {
            let expected: Int
            switch targets {
            case .labels(let l): expected = Int(l[r])
            case .values(let v): expected = argmax(v + r * cols)
            }
            if argmax(x + r * cols) == expected { count += 1 }
        }
        return count
    }

    // MARK: Elementwise maps (activations: any shape, n elements)

    /// y[i] = f(x[i]).
    ///
    /// Always inlined, with `f`, into the caller: an activation's `@_specialize`d method
    /// then holds the whole loop with its formula as the body, which the compiler
    /// vectorises where the formula allows (selects, products).
    @inline(__always)
    public static func map<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int, _ f: (T) -> T) {
        for i in 0..<n { y[i] = f(x[i]) }
    }

    /// dx[i] = f(c[i], dy[i]): a backward pass from the cached c (x or y) and dL/dy.
    ///
    /// Both loads happen whatever `f` does with them, so a formula that picks dy or 0
    /// (ReLU) is a select, not a branch, and vectorises.
    @inline(__always)
    public static func map<T: DLScalar>(_ c: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int,
                                        _ f: (T, T) -> T) {
        for i in 0..<n { let g = dy[i]; dx[i] = f(c[i], g) }
    }

    /// Row-wise softmax: y[r, :] = exp(x[r, :] - max) / sum. Stable for any finite x.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func softmaxRows<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, rows: Int, cols: Int) {
        shiftedExponentials(x, y, rows: rows, cols: cols)
        for r in 0..<rows { _ = normalizeExponentials(x + r * cols, y + r * cols, cols) }
    }

    /// Softmax of one row into y; returns log(sum(exp(x))) in Double, so callers can form
    /// log-probabilities x[k] - logZ without taking the log of an underflowed probability.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func softmaxRow<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ cols: Int) -> Double {
        shiftedExponentials(x, y, rows: 1, cols: cols)
        return normalizeExponentials(x, y, cols)
    }

    /// Softmax's first half for `rows` rows: y = exp(x - the row's max). Float32 takes every
    /// row's exponentials in one call (dlk_exp_f32, 8 at a time: a row of 10 classes alone
    /// is one vector and two single values); other types libm's exp, one at a time.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func shiftedExponentials<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, rows: Int,
                                                 cols: Int) {
        for r in 0..<rows {
            let xr = x + r * cols, yr = y + r * cols
            var m = xr[0]
            for c in 1..<cols where xr[c] > m { m = xr[c] }
            if T.self == Float.self {
                for c in 0..<cols { yr[c] = xr[c] - m }
            } else {
                for c in 0..<cols { yr[c] = T.exp(xr[c] - m) }
            }
        }
        if T.self == Float.self { dlk_exp_f32(Kernels.asFloats(y), Kernels.asMutableFloats(y), Int64(rows * cols), 0) }
    }

    /// Softmax's second half, on a row of x whose `shiftedExponentials` are in y: y /= sum(y);
    /// returns log(sum(exp(x))) in Double.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func normalizeExponentials<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>,
                                                   _ cols: Int) -> Double {
        var m = x[0]
        for c in 1..<cols where x[c] > m { m = x[c] }
        var s: T = 0
        for c in 0..<cols { s += y[c] }
        let inv = 1 / s
        for c in 0..<cols { y[c] *= inv }
        return Double(m) + Double.log(Double(s))
    }

    /// Softmax's Jacobian applied row by row: dx = y * (dy - sum(dy * y)).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func softmaxBackwardRows<T: DLScalar>(_ y: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let yr = y + r * cols, dyr = dy + r * cols, dxr = dx + r * cols
            var dot: T = 0
            for c in 0..<cols { dot += dyr[c] * yr[c] }
            for c in 0..<cols { dxr[c] = yr[c] * (dyr[c] - dot) }
        }
    }

    // MARK: Losses (each returns the mean loss in Double and writes dL/dpred)

    /// MSE: mean((p - t)^2) over n elements; dp = 2 (p - t) / n.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func mse<T: DLScalar>(_ p: UnsafePointer<T>, _ t: UnsafePointer<T>, _ dp: UnsafeMutablePointer<T>, _ n: Int) -> Double {
        var sum = 0.0
        let scale = T(2) / T(n)
        for i in 0..<n {
            let d = p[i] - t[i]
            sum += Double(d) * Double(d)
            dp[i] = scale * d
        }
        return sum / Double(n)
    }

    /// Huber: mean of 0.5 d^2 (|d| <= delta) or delta (|d| - delta/2); dp = d or delta sign(d), over n.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func huber<T: DLScalar>(_ p: UnsafePointer<T>, _ t: UnsafePointer<T>, _ dp: UnsafeMutablePointer<T>, _ n: Int, delta: T) -> Double {
        var sum = 0.0
        let inv = 1 / T(n)
        for i in 0..<n {
            let d = p[i] - t[i]
            let a = abs(d)
            if a <= delta {
                sum += 0.5 * Double(d) * Double(d)
                dp[i] = d * inv
            } else {
                sum += Double(delta) * (Double(a) - 0.5 * Double(delta))
                dp[i] = (d > 0 ? delta : -delta) * inv
            }
        }
        return sum / Double(n)
    }

    /// Cross-entropy of softmax(logits) against class indices, mean over rows, with label
    /// smoothing e (PyTorch's): the target row is q = (1 - e) onehot + e / cols, so
    /// loss = logZ - (1 - e) x[k] - e / cols sum(x) and dlogits = (softmax - q) / rows.
    /// Labels must already be validated in [0, cols).
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func crossEntropyLabels<T: DLScalar>(_ logits: UnsafePointer<T>, _ labels: UnsafePointer<Int32>,
                                                      _ dlogits: UnsafeMutablePointer<T>, rows: Int, cols: Int,
                                                      smoothing: Double = 0) -> Double {
        var sum = 0.0
        let inv = 1 / T(rows)
        let off = T(smoothing / Double(cols)), on = T(1 - smoothing)
        shiftedExponentials(logits, dlogits, rows: rows, cols: cols)
        for r in 0..<rows {
            let lr = logits + r * cols, row = dlogits + r * cols
            let k = Int(labels[r])
            sum += normalizeExponentials(lr, row, cols) - (1 - smoothing) * Double(lr[k])      // -log softmax[k] when e = 0
            if smoothing > 0 {
                var rowSum = 0.0
                for c in 0..<cols { rowSum += Double(lr[c]) }
                sum -= smoothing / Double(cols) * rowSum
            }
            for c in 0..<cols { row[c] = (row[c] - off) * inv }
            row[k] -= on * inv
        }
        return sum / Double(rows)
    }

    /// Cross-entropy of softmax(logits) against target rows t (one-hot or soft), mean over
    /// rows, with label smoothing e: q = (1 - e) t + e / cols; loss = -sum(q (x - logZ));
    /// dlogits = (softmax * sum(q) - q) / rows, which is (softmax - q) / rows for a distribution.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func crossEntropyDense<T: DLScalar>(_ logits: UnsafePointer<T>, _ t: UnsafePointer<T>,
                                                     _ dlogits: UnsafeMutablePointer<T>, rows: Int, cols: Int,
                                                     smoothing: Double = 0) -> Double {
        var sum = 0.0
        let inv = 1 / T(rows)
        let off = T(smoothing / Double(cols)), keep = T(1 - smoothing)
        shiftedExponentials(logits, dlogits, rows: rows, cols: cols)
        for r in 0..<rows {
            let lr = logits + r * cols, row = dlogits + r * cols, tr = t + r * cols
            let logZ = normalizeExponentials(lr, row, cols)
            var qsum: T = 0
            for c in 0..<cols {
                let q = keep * tr[c] + off
                sum -= Double(q) * (Double(lr[c]) - logZ)
                qsum += q
            }
            for c in 0..<cols { row[c] = (row[c] * qsum - (keep * tr[c] + off)) * inv }
        }
        return sum / Double(rows)
    }

    /// Binary cross-entropy on logits x against targets t in [0, 1], mean over n values,
    /// in the stable form of PyTorch's BCEWithLogitsLoss:
    /// loss = max(x, 0) - x t + log(1 + exp(-|x|)); dx = (sigmoid(x) - t) / n.
    /// Returns nil (with `bad` the index) when a target is outside [0, 1].
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func binaryCrossEntropy<T: DLScalar>(_ x: UnsafePointer<T>, _ t: UnsafePointer<T>,
                                                      _ dx: UnsafeMutablePointer<T>, _ n: Int, bad: inout Int) -> Double? {
        var sum = 0.0
        let inv = 1 / Double(n)
        for i in 0..<n {
            let xi = Double(x[i]), ti = Double(t[i])
            guard ti >= 0, ti <= 1 else {
                bad = i
                return nil
            }
            let e = Double.exp(-abs(xi))
            sum += max(xi, 0) - xi * ti + Double.log(onePlus: e)
            let sigmoid = xi >= 0 ? 1 / (1 + e) : e / (1 + e)
            dx[i] = T((sigmoid - ti) * inv)
        }
        return sum * inv
    }
}
