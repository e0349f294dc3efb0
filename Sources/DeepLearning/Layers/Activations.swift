/// Elementwise activations: ReLU, LeakyReLU, Sigmoid and Tanh. Any shape.
///
///     relu:       y = max(0, x)                 dx = dy * [x > 0]           (caches x)
///     leaky_relu: y = x if x > 0 else a x       dx = dy if x > 0 else a dy  (caches x)
///     sigmoid:    y = 1 / (1 + e^-x)            dx = dy * y * (1 - y)       (caches y)
///     tanh:       y = tanh x                    dx = dy * (1 - y^2)         (caches y)
public final class Activation<T: DLScalar>: Layer {
    public enum Function: Sendable, Equatable {
        case relu
        case leakyReLU(alpha: Double)
        case sigmoid
        case tanh
    }

    public let function: Function
    public let outputShape: [Int]
    public var type: String {
        switch function {
        case .relu: return "relu"
        case .leakyReLU: return "leaky_relu"
        case .sigmoid: return "sigmoid"
        case .tanh: return "tanh"
        }
    }

    private var x: Tensor<T>?
    private let y: Tensor<T>
    private let dx: Tensor<T>

    public init(_ function: Function, shape: [Int]) throws(DLError) {
        self.function = function
        self.outputShape = shape
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        try y.resize(x.shape)
        switch function {
        case .relu: Kernels.reluForward(x.data, y.data, x.count)
        case .leakyReLU(let alpha): Kernels.leakyReluForward(x.data, y.data, x.count, alpha: T(alpha))
        case .sigmoid: Kernels.sigmoidForward(x.data, y.data, x.count)
        case .tanh: Kernels.tanhForward(x.data, y.data, x.count)
        }
        self.x = x
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        guard let x else { throw .invalid("\(type): backward called before forward") }
        try dx.resize(dy.shape)
        switch function {
        case .relu: Kernels.reluBackward(x.data, dy.data, dx.data, dy.count)
        case .leakyReLU(let alpha): Kernels.leakyReluBackward(x.data, dy.data, dx.data, dy.count, alpha: T(alpha))
        case .sigmoid: Kernels.sigmoidBackward(y.data, dy.data, dx.data, dy.count)
        case .tanh: Kernels.tanhBackward(y.data, dy.data, dx.data, dy.count)
        }
        return dx
    }
}

public enum ReLUFactory: LayerFactory {
    public static let kind = ComponentKind("relu", doc: "y = max(0, x)")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Activation<T>(.relu, shape: context.inputShape)
    }
}

public enum LeakyReLUFactory: LayerFactory {
    public static let kind = ComponentKind("leaky_relu", options: [
        OptionSpec("alpha", .number(0...1), default: .double(0.01), doc: "slope for x <= 0"),
    ], doc: "y = x for x > 0, alpha * x otherwise")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Activation<T>(.leakyReLU(alpha: try spec.double("alpha")), shape: context.inputShape)
    }
}

public enum SigmoidFactory: LayerFactory {
    public static let kind = ComponentKind("sigmoid", doc: "y = 1 / (1 + exp(-x))")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Activation<T>(.sigmoid, shape: context.inputShape)
    }
}

public enum TanhFactory: LayerFactory {
    public static let kind = ComponentKind("tanh", doc: "y = tanh(x)")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Activation<T>(.tanh, shape: context.inputShape)
    }
}
