/// Inverted dropout: while training, each entry is zeroed with probability `rate` and the
/// others are scaled by 1 / (1 - rate), so evaluation needs no rescaling. Any shape.
///
///     training:   mask = 0 or 1 / (1 - rate) per entry    y = x mask    dx = dy mask   (caches mask)
///     evaluation: y = x (the input tensor itself)         dx = dy
///
/// Masks are drawn from the model's generator (`RandomSource`), so a seed fixes them; while
/// the source is frozen the previous mask is reused (gradient checks).
public final class Dropout<T: DLScalar>: Layer {
    public let type = "dropout"
    public let rate: Double
    public let outputShape: [Int]
    public var acceptsAnyShape: Bool { true }
    private let random: RandomSource
    private let mask: Tensor<T>
    private let y: Tensor<T>
    private let dx: Tensor<T>
    private var masked = false

    public init(rate: Double, shape: [Int], random: RandomSource) throws(DLError) {
        self.rate = rate
        self.outputShape = shape
        self.random = random
        self.mask = try Tensor(shape: [0])
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        masked = training && rate > 0
        guard masked else { return x }
        if !(random.frozen && mask.shape == x.shape) {
            try mask.resize(x.shape)
            Kernels.dropoutMask(mask.data, mask.count, rate: rate, rng: &random.generator)
        }
        try y.resize(x.shape)
        Kernels.multiply(x.data, mask.data, y.data, x.count)
        return y
    }

    /// Evaluation passes x through, as `forward` does.
    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> { x }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        guard masked else { return dy }
        guard dy.shape == mask.shape else { throw .invalid("dropout: backward called before forward, or with another shape") }
        try dx.resize(dy.shape)
        Kernels.multiply(dy.data, mask.data, dx.data, dy.count)
        return dx
    }
}

public enum DropoutFactory: LayerFactory {
    public static let kind = ComponentKind("dropout", options: [
        OptionSpec("rate", .numberHalfOpen(0..<1), default: .double(0.5), doc: "probability of zeroing each entry while training"),
    ], doc: "inverted dropout while training, the identity in evaluation")

    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Dropout<T>(rate: try spec.double("rate"), shape: context.inputShape, random: context.random)
    }
}
