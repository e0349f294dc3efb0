/// Softmax over the features of each sample, for output probabilities.
///
///     x: (B, C) -> y: (B, C), y[r] = exp(x[r] - max) / sum      (caches y)
///     dx[r] = y[r] * (dy[r] - <dy[r], y[r]>)
///
/// With the cross-entropy loss, which applies softmax itself, leave this layer out.
public final class Softmax<T: DLScalar>: Layer {
    public let type = "softmax"
    public let outputShape: [Int]
    public var acceptsAnyShape: Bool { true }
    private let y: Tensor<T>
    private let dx: Tensor<T>

    public init(shape: [Int]) throws(DLError) {
        self.outputShape = shape
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        try Softmax.compute(x, y)
    }

    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        try Softmax.compute(x, scratch.output)
    }

    private static func compute(_ x: Tensor<T>, _ y: Tensor<T>) throws(DLError) -> Tensor<T> {
        try y.resize(x.shape)
        let rows = x.shape[0]
        guard rows > 0 else { return y }
        Kernels.softmaxRows(x.data, y.data, rows: rows, cols: x.count / rows)
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        try dx.resize(dy.shape)
        let rows = dy.shape[0]
        guard rows > 0 else { return dx }
        Kernels.softmaxBackwardRows(y.data, dy.data, dx.data, rows: rows, cols: dy.count / rows)
        return dx
    }
}

public enum SoftmaxFactory: LayerFactory {
    public static let kind = ComponentKind("softmax", doc: "softmax over each sample's features (for outputs)")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Softmax<T>(shape: context.inputShape)
    }
}
