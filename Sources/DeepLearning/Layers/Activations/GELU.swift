/// y = x Φ(x), Φ the standard normal distribution function, in PyTorch's two forms
/// (`approximate`). Caches x.
///
///     "none": y = x (1 + erf(x / √2)) / 2        dx = dy (Φ(x) + x e^(-x²/2) / √(2π))
///     "tanh": y = x (1 + tanh u) / 2,  u = √(2/π) (x + 0.044715 x³)
///             dx = dy ((1 + tanh u) / 2 + x (1 - tanh² u) √(2/π) (1 + 3 · 0.044715 x²) / 2)
public struct GELU: ActivationFunction {
    public static let kind = ComponentKind("gelu", options: [
        OptionSpec("approximate", .choice(["none", "tanh"]), default: .string("none"),
                   doc: "\"none\": the exact erf form; \"tanh\": the tanh approximation"),
    ], doc: "y = x * Phi(x), Phi the standard normal distribution function")
    public static let cache = ActivationCache.input

    /// Whether y uses the tanh approximation instead of erf.
    public let usesTanh: Bool

    public init(_ spec: ComponentSpec) throws(DLError) {
        usesTanh = try Self.string("approximate", spec) == "tanh"
    }

    // 1/√2, 1/√(2π), √(2/π) and the cubic coefficient of the tanh form.
    private static let invSqrt2 = 0.7071067811865476, invSqrt2Pi = 0.3989422804014327
    private static let sqrt2OverPi = 0.7978845608028654, cubic = 0.044715

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        if usesTanh {
            let k = T(Self.sqrt2OverPi), c = T(Self.cubic)
            Kernels.map(x, y, n) { x in x * ((1 + T.tanh(k * (x + c * x * x * x))) / 2) }
        } else {
            let s = T(Self.invSqrt2)
            Kernels.map(x, y, n) { x in x * ((1 + T.erf(x * s)) / 2) }
        }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    public func backward<T: DLScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int) {
        if usesTanh {
            let k = T(Self.sqrt2OverPi), c = T(Self.cubic)
            Kernels.map(x, dy, dx, n) { x, dy in
                let t = T.tanh(k * (x + c * x * x * x)), sech2 = 1 - t * t
                // Where tanh has saturated, sech2 is exactly 0 while x (1 + 3c x^2) may have
                // overflowed; their product would be NaN instead of 0.
                let tail = sech2 == 0 ? 0 : x * sech2 * k * (1 + 3 * c * x * x)
                return dy * ((1 + t) + tail) / 2
            }
        } else {
            let s = T(Self.invSqrt2), d = T(Self.invSqrt2Pi)
            Kernels.map(x, dy, dx, n) { x, dy in dy * ((1 + T.erf(x * s)) / 2 + x * d * T.exp(-x * x / 2)) }
        }
    }
}
