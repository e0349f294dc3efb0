/// SiLU (swish): y = x σ(x), σ the sigmoid;  dx = dy σ(x) (1 + x (1 - σ(x))). Caches x.
public struct SiLU: ActivationFunction {
    public static let kind = ComponentKind("silu", doc: "y = x * sigmoid(x)")
    public static let cache = ActivationCache.input

    public init(_ spec: ComponentSpec) {}

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(x, y, n) { x in x * Sigmoid.of(x) }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(x, dy, dx, n) { x, dy in
            let s = Sigmoid.of(x)
            return dy * s * (1 + x * (1 - s))
        }
    }
}
