import CDeepLearningKernels
import CDeepLearningHDF5
import COpenBLAS
import RealModule

/// The element types a model can compute in: `Float` (training default) and `Double`
/// (gradient checks). Only matrix multiplication differs per type; every other kernel is
/// generic and specialised for both types (see `Kernels`).
public protocol DLScalar: BinaryFloatingPoint & Real & Sendable where Self.RawSignificand: FixedWidthInteger {
    /// The dtype name used in specs and checkpoints: "float32" or "float64".
    static var dtypeName: String { get }

    /// One OpenBLAS call, C = alpha * op(A) * op(B) + beta * C, row-major: op(A) is (m, k),
    /// op(B) is (k, n), C is (m, n). Callers use `gemm`, which takes the BLAS guard and
    /// splits large products over the kernel threads.
    static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                         alpha: Self, a: UnsafePointer<Self>, lda: Int,
                         b: UnsafePointer<Self>, ldb: Int,
                         beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// y = alpha * op(A) x + beta * y for row-major A (m, n), op(A) = A^T when `transA`
    /// (x then has m entries and y n): one sample through a linear layer, where gemm
    /// would repack the whole weight matrix for a single row.
    static func gemv(transA: Bool, m: Int, n: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     x: UnsafePointer<Self>, beta: Self, y: UnsafeMutablePointer<Self>)
}

extension Float: DLScalar {
    public static var dtypeName: String { "float32" }

    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                b: UnsafePointer<Float>, ldb: Int,
                                beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}

extension Float {
    /// y = A x (alpha 1, beta 0, A not transposed) runs the library's own kernel
    /// (`dlk_matrix_vector_f32`: calling BLAS costs more than one sample's product); other
    /// products run OpenBLAS's.
    public static func gemv(transA: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        if !transA && alpha == 1 && beta == 0 {
            return dlk_matrix_vector_f32(a, Int64(m), Int64(n), Int64(lda), x, y, 0)
        }
        withBLAS { cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a, blasint(lda), x, 1, beta, y, 1) }
    }
}

extension Double {
    public static func gemv(transA: Bool, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>) {
        withBLAS { cblas_dgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a, blasint(lda), x, 1, beta, y, 1) }
    }
}

extension Double: DLScalar {
    public static var dtypeName: String { "float64" }

    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                alpha: Double, a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int,
                                beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}

extension DLScalar {
    /// C = alpha * op(A) * op(B) + beta * C, row-major: op(A) is (m, k), op(B) is (k, n),
    /// C is (m, n). Every product of the library goes through here, except those that the
    /// first linear layer gives the library's own unpacked kernel (`Kernels.unpackedGemm`).
    ///
    /// The library, not OpenBLAS, decides how many cores a product uses: OpenBLAS is set to
    /// one thread, and a large product is cut into blocks of C's rows (or of its columns,
    /// whichever side is longer; the other operand is then read by every block) that run on
    /// the kernel threads (`Kernels.threads`). The blocks follow from the shape alone
    /// (`GemmBlocks`), so every thread count makes the same OpenBLAS calls and gets the same
    /// bits. On two cores, one OpenBLAS thread per block was measured faster at the shapes of
    /// small networks than OpenBLAS's own two threads, which did not help at batch 64
    /// (bench/README.md, "The BLAS question").
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Self, a: UnsafePointer<Self>, lda: Int,
                            b: UnsafePointer<Self>, ldb: Int,
                            beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int) {
        withBLAS {
            let split = GemmBlocks(m: m, n: n, k: k)
            if split.count <= 1 {
                blasGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                         b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
                return
            }
            Kernels.parallelFor(split.count) { blocks in
                for block in blocks {
                    let part = split.range(block)
                    if split.alongRows {   // rows part of op(A) and of C
                        let aPart = transA ? a + part.lowerBound : a + part.lowerBound * lda
                        blasGemm(transA: transA, transB: transB, m: part.count, n: n, k: k, alpha: alpha,
                                 a: aPart, lda: lda, b: b, ldb: ldb, beta: beta,
                                 c: c + part.lowerBound * ldc, ldc: ldc)
                    } else {               // columns part of op(B) and of C
                        let bPart = transB ? b + part.lowerBound * ldb : b + part.lowerBound
                        blasGemm(transA: transA, transB: transB, m: m, n: part.count, k: k, alpha: alpha,
                                 a: a, lda: lda, b: bPart, ldb: ldb, beta: beta,
                                 c: c + part.lowerBound, ldc: ldc)
                    }
                }
            }
        }
    }
}

/// How `gemm` cuts a product into blocks: a power of two, at most 8, so that a block holds
/// at least `minWork` multiply-adds (about 20 us on one core here: smaller blocks lose more
/// to packing and to waking a thread than they gain), in multiples of 16 rows or columns
/// (the micro-kernels' width). A function of the shape only.
struct GemmBlocks {
    static let minWork = 1 << 21
    static let unit = 16
    let alongRows: Bool
    let length: Int
    let count: Int

    init(m: Int, n: Int, k: Int) {
        alongRows = m >= n
        length = alongRows ? m : n
        let work = m.multipliedReportingOverflow(by: n).partialValue.multipliedReportingOverflow(by: k)
        let blocksByWork = work.overflow ? 8 : work.partialValue / Self.minWork
        var count = 1
        while count < 8, count * 2 <= blocksByWork, count * 2 * Self.unit <= length { count *= 2 }
        self.count = count
    }

    /// Rows (or columns) of block `i`: unit-aligned bounds, the last block ends at `length`.
    func range(_ i: Int) -> Range<Int> {
        let units = (length + Self.unit - 1) / Self.unit
        let lower = units * i / count * Self.unit
        let upper = i + 1 == count ? length : units * (i + 1) / count * Self.unit
        return lower..<upper
    }
}

/// OpenBLAS runs on one thread in this process (see `gemm`): set once, before the first product.
private let blasOneThread: Void = openblas_set_num_threads(1)

/// Runs `body`, which calls OpenBLAS (`blasGemm`), possibly from several kernel threads:
/// OpenBLAS set to one thread first, and the BLAS guard held once around the whole of it
/// (a thread inside the job must not wait on the guard, see dl_hdf5_isolated.h).
func withBLAS(_ body: () -> Void) {
    _ = blasOneThread
    dlh5i_blas_enter()
    defer { dlh5i_blas_leave() }
    body()
}

/// The dtype a model computes in.
public enum DType: String, Sendable {
    case float32, float64
}
