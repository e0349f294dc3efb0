/// Reshape and flatten: the same values in row-major order, each sample given a new shape.
///
///     x: (B, inputShape) -> y: (B, outputShape), same element count     dx = dy reshaped back
///
/// `flatten` is the reshape to [product of the input shape]. The values are copied (a tensor
/// owns its memory), which costs one memcpy per pass.
public final class Reshape<T: DLScalar>: Layer {
    public let type: String
    public let inputShape: [Int]
    public let outputShape: [Int]
    private let y: Tensor<T>
    private let dx: Tensor<T>

    public init(type: String = "reshape", from inputShape: [Int], to outputShape: [Int]) throws(DLError) {
        self.type = type
        self.inputShape = inputShape
        self.outputShape = outputShape
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        try y.resize(batch: x.shape[0], sample: outputShape)
        y.copy(from: x)
        return y
    }

    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        let y = scratch.output
        try y.resize(batch: x.shape[0], sample: outputShape)
        y.copy(from: x)
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        try dx.resize(batch: dy.shape[0], sample: inputShape)
        dx.copy(from: dy)
        return dx
    }
}

public enum FlattenFactory: LayerFactory {
    public static let kind = ComponentKind("flatten", doc: "each sample as a flat vector: [C, H, W] -> [C H W]")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Reshape<T>(type: "flatten", from: context.inputShape, to: [context.inputShape.reduce(1, *)])
    }
}

public enum ReshapeFactory: LayerFactory {
    public static let kind = ComponentKind("reshape", options: [
        OptionSpec("shape", .positiveInts(count: 3),
                   doc: "the new shape of each sample: [C, H, W], or one integer for a flat vector"),
    ], doc: "each sample given a new shape with the same number of values")

    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        let shape = try spec.ints("shape")
        let from = context.inputShape.reduce(1, *), to = try checkedCount(shape, "reshape target \(shape)")
        guard from == to else {
            throw DLError(.spec, "\(context.describe("reshape")): cannot reshape the input of shape \(context.inputShape) (\(from) values) to \(shape) (\(to) values)")
        }
        return try Reshape<T>(from: context.inputShape, to: shape)
    }
}
