/// y = x where x > 0, else alpha (e^x - 1);  dx = dy where x > 0, else dy alpha e^x.
/// Caches x (so any alpha works; y + alpha would do only for alpha >= 0).
public struct ELU: ActivationFunction {
    public static let kind = ComponentKind("elu", options: [
        OptionSpec("alpha", .number(0...1e6), default: .double(1), doc: "y tends to -alpha as x -> -infinity"),
    ], doc: "y = x for x > 0, alpha * (exp(x) - 1) otherwise")
    public static let cache = ActivationCache.input

    public let alpha: Double

    public init(_ spec: ComponentSpec) throws(DLError) {
        alpha = try Self.number("alpha", spec)
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        let a = T(alpha)
        Kernels.map(x, y, n) { x in x > 0 ? x : a * T.expMinusOne(x) }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        let a = T(alpha)
        Kernels.map(x, dy, dx, n) { x, dy in x > 0 ? dy : dy * a * T.exp(x) }
    }
}
