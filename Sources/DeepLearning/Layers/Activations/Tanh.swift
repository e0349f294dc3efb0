/// y = tanh x;  dx = dy (1 - y^2). Caches y.
public struct Tanh: ActivationFunction {
    public static let kind = ComponentKind("tanh", doc: "y = tanh(x)")
    public static let cache = ActivationCache.output

    public init(_ spec: ComponentSpec) {}

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(x, y, n) { x in T.tanh(x) }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ y: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.map(y, dy, dx, n) { y, dy in dy * (1 - y * y) }
    }
}
