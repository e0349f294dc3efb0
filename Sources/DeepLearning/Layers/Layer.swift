/// A trainable tensor with its gradient, named as the model names it ("layers.0.weight").
///
/// The model's one list of parameters feeds the optimizer, checkpoints, gradient checks
/// and error messages; nothing keeps a parallel table.
public final class Parameter<T: DLScalar> {
    public internal(set) var name: String
    public let value: Tensor<T>
    public let grad: Tensor<T>

    /// Whether `value`, `grad` and the optimizer's state for this parameter hold their
    /// matrix transposed in memory: `value.shape` stays (rows, cols), the layout every
    /// outside view shows (checkpoints, get/set by index, conversion, `values`), while the
    /// data lie column after column. A layer chooses it when the transpose is what its
    /// kernels read (the sparse first layer's W^T); elementwise code (optimizers, gradient
    /// checks) works on either layout as long as value and gradient share it.
    public private(set) var isTransposed = false

    public init(_ name: String, shape: [Int]) throws(DLError) {
        self.name = name
        self.value = try Tensor(shape: shape)
        self.grad = try Tensor(shape: shape)
    }

    /// The values in the (rows, cols) order of `value.shape`, whatever the layout.
    public var values: [T] {
        [T](unsafeUninitializedCapacity: value.count) { out, n in
            copyOut(value, to: out.baseAddress!)
            n = value.count
        }
    }

    /// Switches a rank-2 parameter to the transposed layout, moving its current value
    /// (the gradient is left to the next backward pass). Done once, before training.
    func storeTransposed() {
        guard !isTransposed, value.shape.count == 2 else { return }
        isTransposed = true
        adoptShapeOrder(value)
    }

    /// Copies `t` (this parameter's value or one of its optimizer slots, in this
    /// parameter's layout) into `out` in shape order, converting the element type.
    func copyOut<S: DLScalar>(_ t: Tensor<T>, to out: UnsafeMutablePointer<S>) {
        guard isTransposed else { return Kernels.convert(t.data, out, t.count) }
        let (rows, cols) = (t.shape[0], t.shape[1])
        for c in 0..<cols { for r in 0..<rows { out[r * cols + c] = S(t.data[c * rows + r]) } }
    }

    /// Fills `t` (value or slot, in this parameter's layout) from `values` in shape order.
    func copyIn<S: DLScalar>(_ t: Tensor<T>, from values: UnsafePointer<S>) {
        guard isTransposed else { return Kernels.convert(values, t.data, t.count) }
        let (rows, cols) = (t.shape[0], t.shape[1])
        for r in 0..<rows { for c in 0..<cols { t.data[c * rows + r] = T(values[r * cols + c]) } }
    }

    /// Copies `t` of parameter `a` into `u` of parameter `b` (the same parameter of another
    /// model, maybe of another element type or layout).
    static func copy<U: DLScalar>(_ a: Parameter<T>, _ t: Tensor<T>, to b: Parameter<U>, _ u: Tensor<U>) {
        if a.isTransposed == b.isTransposed { return Kernels.convert(t.data, u.data, t.count) }
        if a.isTransposed { return a.copyOut(t, to: u.data) }
        b.copyIn(u, from: t.data)
    }

    /// Rearranges `t`, filled in shape order (a checkpoint read, or the value before the
    /// switch), into this layout.
    func adoptShapeOrder(_ t: Tensor<T>) {
        guard isTransposed else { return }
        let shapeOrder = t.array
        copyIn(t, from: shapeOrder)
    }
}

/// A layer of a sequential model.
///
/// `forward` caches what `backward` needs; `backward` takes dL/dy, stores parameter
/// gradients in `parameters[i].grad` and returns dL/dx (or nil when the caller does not
/// need it, which lets the first layer skip that work). Returned tensors belong to the
/// layer and are overwritten by its next call. Shapes include the batch dimension first.
public protocol Layer<Scalar>: AnyObject {
    associatedtype Scalar: DLScalar
    /// The spec's type name ("linear").
    var type: String { get }
    /// Shape of one output sample.
    var outputShape: [Int] { get }
    /// Trainable parameters, with names local to the layer ("weight", "bias").
    var parameters: [Parameter<Scalar>] { get }
    /// Non-trainable state saved in checkpoints (running statistics); `grad` is unused.
    var buffers: [Parameter<Scalar>] { get }
    func forward(_ x: Tensor<Scalar>, training: Bool) throws(DLError) -> Tensor<Scalar>
    func backward(_ dy: Tensor<Scalar>, needInputGradient: Bool) throws(DLError) -> Tensor<Scalar>?
}

extension Layer {
    public var parameters: [Parameter<Scalar>] { [] }
    public var buffers: [Parameter<Scalar>] { [] }
}

/// What a layer builder knows when the model builds layer `index`.
public struct LayerContext {
    /// Shape of one input sample (the previous layer's output).
    public let inputShape: [Int]
    public let index: Int
    /// The spec's default initializer, for layers that do not name one.
    public let defaultInitializer: Initializer
    /// The model's generator, shared with it: initial weights are drawn from it in layer
    /// order, and layers that draw while training (dropout) keep a reference.
    public let random: RandomSource
    /// Trainable scalars the remaining layers may still allocate (see `reserve`).
    public var parameterBudget: Int = Limits.maxModelParameters

    public init(inputShape: [Int], index: Int, defaultInitializer: Initializer, random: RandomSource,
                parameterBudget: Int = Limits.maxModelParameters) {
        self.inputShape = inputShape
        self.index = index
        self.defaultInitializer = defaultInitializer
        self.random = random
        self.parameterBudget = parameterBudget
    }

    /// A context with a generator of its own (a layer built outside a model).
    public init(inputShape: [Int], index: Int, defaultInitializer: Initializer, rng: RandomGenerator,
                parameterBudget: Int = Limits.maxModelParameters) {
        self.init(inputShape: inputShape, index: index, defaultInitializer: defaultInitializer,
                  random: RandomSource(rng), parameterBudget: parameterBudget)
    }

    /// The shared generator itself, for drawing initial weights (`&context.rng`).
    public var rng: RandomGenerator {
        get { random.generator }
        nonmutating set { random.generator = newValue }
    }

    /// Claims `count` parameters from the model's budget before a layer allocates them,
    /// so a spec asking for too much memory is refused before any allocation.
    public mutating func reserve(_ count: Int, _ what: String) throws(DLError) {
        guard count >= 0, count <= parameterBudget else {
            throw DLError(.noMemory, "\(what) needs \(count) parameters, more than the model limit of \(Limits.maxModelParameters) in all")
        }
        parameterBudget -= count
    }

    /// "layers[2] (linear)", for messages.
    public func describe(_ type: String) -> String { "layers[\(index)] (\(type))" }
}

/// Builds one type of layer from its spec. Adding a layer type is a new file with a
/// `Layer` class and a `LayerFactory`, plus one line in `LayerRegistry.factories`; an
/// elementwise activation is a new file with an `ActivationFunction` only.
public protocol LayerFactory: Sendable {
    static var kind: ComponentKind { get }
    static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T>
}

/// The layer types a spec can name.
public enum LayerRegistry {
    public static let factories: [any LayerFactory.Type] = [
        LinearFactory.self,
        ReLU.self,
        LeakyReLU.self,
        Sigmoid.self,
        Tanh.self,
        GELU.self,
        SiLU.self,
        ELU.self,
        Softplus.self,
        SoftmaxFactory.self,
        FlattenFactory.self,
        ReshapeFactory.self,
        Conv2DFactory.self,
        MaxPool2DFactory.self,
        AvgPool2DFactory.self,
        BatchNormFactory.self,
        DropoutFactory.self,
    ]

    public static func factory(_ type: String) -> (any LayerFactory.Type)? {
        factories.first { $0.kind.type == type }
    }

    public static var kinds: [ComponentKind] { factories.map { $0.kind } }
}
