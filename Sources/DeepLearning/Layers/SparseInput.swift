import CDeepLearningKernels
import Glibc

/// The sparse path of a float32 linear layer whose input batches are mostly one value.
///
/// Raw MNIST pixels are 81% background, and after standardization every background pixel
/// is still one and the same value `v`. Writing the batch as `x = v + S`, with `S` sparse,
///
///     y  = x W^T + b   = S W^T + (b + v rowsum(W))
///     dW = dy^T x      = dy^T S + v colsum(dy) 1^T
///
/// so both products cost time in proportion to the nonzeros of `S` instead of the whole
/// batch (C kernels in `CDeepLearningKernels`, with AVX2/FMA versions). The layer keeps its
/// weight transposed (`Parameter.isTransposed`): a nonzero input j adds row j of W^T to its
/// output row, and row j of dW^T is a sum of rows of dy, so neither product transposes.
/// The results are the same sums as the dense path's, accumulated in another order: they
/// agree to float32 rounding, and the same batch always takes the same path, so runs stay
/// reproducible.
///
/// Used for batches of at least `minimumRows` samples in which at most `maxDensity` of the
/// entries differ from `v`, tried first as the most common of a few sampled entries, then
/// zero. Other batches (dense data, a single sample, where `gemv` is faster) use BLAS.
final class SparseInput {
    static let minimumRows = 8
    /// Above a quarter of the entries, OpenBLAS's dense product is as fast (measured on
    /// MNIST-sized layers: the sparse forward and weight gradient cost about half the dense
    /// ones at 19% density).
    static let maxDensity = 0.25

    let inFeatures: Int
    let outFeatures: Int
    /// Each half of the inputs' workspace (see `dlk_sparse_forward`), and (x - v)^T for the
    /// weight gradient.
    private let halves = (0..<2).map { _ in Half() }
    private let transposedBatch = Buffer<Float>()
    private let gradientBase = Buffer<Float>()

    private final class Half {
        let start = Buffer<Int32>(), index = Buffer<Int32>(), value = Buffer<Float>()
        let base = Buffer<Float>(), scratch = Buffer<Float>(), partial = Buffer<Float>()

        func reserve(rows: Int, capacity: Int, outputs: Int) -> Bool {
            start.reserve(rows + 1) && index.reserve(capacity) && value.reserve(capacity)
                && base.reserve(outputs) && scratch.reserve(outputs) && partial.reserve(rows * outputs)
        }

        var workspace: dlk_sparse_half {
            dlk_sparse_half(start: start.base, index: index.base, value: value.base, base: base.base,
                            scratch: scratch.base, partial: partial.base, nonzeros: 0)
        }
    }

    /// Tests: run the portable C kernels even where the AVX2 ones would.
    var portable = false
    private var isa: Int32 { portable ? 1 : 0 }

    /// The batch of the last forward pass that took this path: its rows and the value `v` it
    /// was compressed around.
    private(set) var rows = 0
    private(set) var background: Float = 0

    init(inFeatures: Int, outFeatures: Int) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    /// y (rows x out) = x W^T + bias for x (rows x inFeatures), from the weight stored
    /// transposed (in x out: the row a nonzero input adds to the output), when x is sparse
    /// enough. False (y then garbage, nothing kept) when it is not, or when a buffer cannot
    /// be allocated: the caller then takes the dense path.
    func forward(_ x: UnsafePointer<Float>, rows: Int, weightT: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 y: UnsafeMutablePointer<Float>) -> Bool {
        self.rows = 0
        guard rows >= SparseInput.minimumRows, inFeatures < Int(Int32.max) else { return false }
        let total = rows.multipliedReportingOverflow(by: inFeatures)
        guard !total.overflow, total.partialValue < Int(Int32.max) else { return false }
        let limit = Int(Double(total.partialValue) * SparseInput.maxDensity)
        guard halves.allSatisfy({ $0.reserve(rows: rows, capacity: limit + inFeatures + 8, outputs: outFeatures) }) else {
            return false
        }
        return withUnsafeTemporaryAllocation(of: dlk_sparse_half.self, capacity: 2) { workspace in
            for h in 0..<2 { workspace.initializeElement(at: h, to: halves[h].workspace) }
            var v = SparseInput.likelyBackground(x, count: total.partialValue)
            while true {
                let n = dlk_sparse_forward(x, Int64(rows), Int64(inFeatures), v, Int64(limit), weightT, Int64(outFeatures),
                                           bias, workspace.baseAddress!, y, isa)
                if n >= 0 {
                    self.rows = rows
                    background = v
                    return true
                }
                if v == 0 { return false }
                v = 0
            }
        }
    }

    /// y (out) = x W^T + bias for one sample x, dense or not. False when a buffer cannot be
    /// allocated (the caller then takes the BLAS path).
    func forwardOne(_ x: UnsafePointer<Float>, weightT: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                    y: UnsafeMutablePointer<Float>) -> Bool {
        self.rows = 0
        guard halves[1].partial.reserve(outFeatures) else { return false }
        dlk_sparse_forward_one(x, Int64(inFeatures), weightT, Int64(outFeatures), bias, halves[1].partial.base, y, isa)
        return true
    }

    /// The most frequent of 16 entries spread evenly over the batch (the first on ties): the
    /// value to compress around, when there is one.
    static func likelyBackground(_ x: UnsafePointer<Float>, count: Int) -> Float {
        let samples = 16
        var best = x[0], bestCount = 0
        for a in 0..<samples {
            let candidate = x[a * count / samples]
            var n = 0
            for b in 0..<samples where x[b * count / samples] == candidate { n += 1 }
            if n > bestCount { (best, bestCount) = (candidate, n) }
        }
        return best
    }

    /// dW^T (in x out) = x^T dy for `x`, the batch of the last sparse forward pass, in the
    /// transposed layout the weight is stored in. Row j is v times `columnSum` (dy summed
    /// over the batch, the bias gradient) plus, over the batch rows where input j differs
    /// from v, that difference times the row of dy: x - v is transposed so that input j's
    /// entries over the batch lie together. False when a buffer cannot be allocated.
    func weightGradient(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, columnSum: UnsafePointer<Float>,
                        intoTransposed dWT: UnsafeMutablePointer<Float>) -> Bool {
        let (i, o) = (inFeatures, outFeatures)
        guard rows > 0, transposedBatch.reserve(rows * i), gradientBase.reserve(o) else { return false }
        var base: UnsafePointer<Float>? = nil
        if background != 0 {
            for c in 0..<o { gradientBase.base[c] = background * columnSum[c] }
            base = UnsafePointer(gradientBase.base)
        }
        dlk_sparse_backward(x, Int64(rows), Int64(i), background, dy, Int64(o), base, transposedBatch.base, dWT, isa)
        return true
    }
}

/// A growable malloc'd buffer that never shrinks: reserved once, reused every step.
final class Buffer<Element> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var capacity = 0

    init() { base = UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment)! }

    deinit { if capacity > 0 { free(base) } }

    /// Makes room for `count` elements (contents are lost when it grows). False when out of memory.
    func reserve(_ count: Int) -> Bool {
        if count <= capacity { return true }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow, let raw = malloc(bytes) else { return false }
        if capacity > 0 { free(base) }
        base = raw.bindMemory(to: Element.self, capacity: count)
        capacity = count
        return true
    }
}
