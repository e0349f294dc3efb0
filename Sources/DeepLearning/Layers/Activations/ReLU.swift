import CDeepLearningKernels

/// y = max(0, x);  dx = dy where x > 0, else 0 (the gradient at exactly 0 is 0). Caches x.
public struct ReLU: ActivationFunction {
    public static let kind = ComponentKind("relu", doc: "y = max(0, x)")
    public static let cache = ActivationCache.input

    public init(_ spec: ComponentSpec) {}

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        if T.self == Float.self {   // 8 at a time on AVX2, the same values
            return dlk_relu_f32(Kernels.asFloats(x), Kernels.asMutableFloats(y), Int64(n), 0)
        }
        Kernels.map(x, y, n) { x in x > 0 ? x : 0 }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        if T.self == Float.self {
            return dlk_relu_backward_f32(Kernels.asFloats(x), Kernels.asFloats(dy), Kernels.asMutableFloats(dx),
                                         Int64(n), 0)
        }
        Kernels.map(x, dy, dx, n) { x, dy in x > 0 ? dy : 0 }
    }
}
