/// y = x where x > 0, else alpha x;  dx = dy where x > 0, else alpha dy. Caches x.
public struct LeakyReLU: ActivationFunction {
    public static let kind = ComponentKind("leaky_relu", options: [
        OptionSpec("alpha", .number(0...1), default: .double(0.01), doc: "slope for x <= 0"),
    ], doc: "y = x for x > 0, alpha * x otherwise")
    public static let cache = ActivationCache.input

    public let alpha: Double

    public init(_ spec: ComponentSpec) throws(DLError) {
        alpha = try Self.number("alpha", spec)
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        let a = T(alpha)
        Kernels.map(x, y, n) { x in x > 0 ? x : a * x }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        let a = T(alpha)
        Kernels.map(x, dy, dx, n) { x, dy in x > 0 ? dy : a * dy }
    }
}
