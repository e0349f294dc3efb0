/// y = 1 / (1 + e^-x);  dx = dy y (1 - y). Caches y.
public struct Sigmoid: ActivationFunction {
    public static let kind = ComponentKind("sigmoid", doc: "y = 1 / (1 + exp(-x))")
    public static let cache = ActivationCache.output

    public init(_ spec: ComponentSpec) {}

    /// 1 / (1 + e^-x) without overflow for large |x|: e^x / (1 + e^x) for negative x, where
    /// e^-x would overflow. SiLU and Softplus use it too.
    @inline(__always)
    static func of<T: DLScalar>(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(x, y, n) { x in Self.of(x) }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ y: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(y, dy, dx, n) { y, dy in dy * y * (1 - y) }
    }
}
