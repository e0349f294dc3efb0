/// y = log(1 + e^(beta x)) / beta, and y = x where beta x > threshold (PyTorch's Softplus);
/// dx = dy σ(beta x), and dy where beta x > threshold. Caches x.
///
/// Below the threshold, log(1 + e^z) is computed as max(z, 0) + log1p(e^-|z|), which equals
/// it but cannot overflow, so a large threshold is safe too.
public struct Softplus: ActivationFunction {
    public static let kind = ComponentKind("softplus", options: [
        OptionSpec("beta", .number(1e-12...1e12), default: .double(1), doc: "sharpness: y -> max(0, x) as beta grows"),
        OptionSpec("threshold", .number(-1e12...1e12), default: .double(20), doc: "y = x where beta * x exceeds it"),
    ], doc: "y = log(1 + exp(beta * x)) / beta, linear above the threshold")
    public static let cache = ActivationCache.input

    public let beta: Double
    public let threshold: Double

    public init(_ spec: ComponentSpec) throws(DLError) {
        beta = try Self.number("beta", spec)
        threshold = try Self.number("threshold", spec)
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        let b = T(beta), limit = T(threshold)
        Kernels.map(x, y, n) { x in
            let z = b * x
            return z > limit ? x : (max(z, 0) + T.log(onePlus: T.exp(-abs(z)))) / b
        }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        let b = T(beta), limit = T(threshold)
        Kernels.map(x, dy, dx, n) { x, dy in
            let z = b * x
            return z > limit ? dy : dy * Sigmoid.of(z)
        }
    }
}
