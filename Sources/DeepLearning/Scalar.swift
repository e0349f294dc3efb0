import CDeepLearningHDF5
import COpenBLAS
import RealModule

/// The element types a model can compute in: `Float` (training default) and `Double`
/// (gradient checks). Only matrix multiplication differs per type; every other kernel is
/// generic and specialised for both types (see `Kernels`).
public protocol DLScalar: BinaryFloatingPoint & Real & Sendable where Self.RawSignificand: FixedWidthInteger {
    /// The dtype name used in specs and checkpoints: "float32" or "float64".
    static var dtypeName: String { get }

    /// C = alpha * op(A) * op(B) + beta * C, row-major, through OpenBLAS.
    /// op(A) is (m, k), op(B) is (k, n), C is (m, n).
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
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

    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        dlh5i_blas_enter()
        defer { dlh5i_blas_leave() }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}

extension Float {
    public static func gemv(transA: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        dlh5i_blas_enter()
        defer { dlh5i_blas_leave() }
        cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a, blasint(lda), x, 1, beta, y, 1)
    }
}

extension Double {
    public static func gemv(transA: Bool, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>) {
        dlh5i_blas_enter()
        defer { dlh5i_blas_leave() }
        cblas_dgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a, blasint(lda), x, 1, beta, y, 1)
    }
}

extension Double: DLScalar {
    public static var dtypeName: String { "float64" }

    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        dlh5i_blas_enter()
        defer { dlh5i_blas_leave() }
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }
}

/// The dtype a model computes in.
public enum DType: String, Sendable {
    case float32, float64
}
