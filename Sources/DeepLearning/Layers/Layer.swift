/// A layer of a sequential model.
///
/// `forward` caches what `backward` needs; `backward` takes dL/dy, stores parameter
/// gradients in `parameters[i].grad` and returns dL/dx (or nil when the caller does not
/// need it, which lets the first layer skip that work). Returned tensors belong to the
/// layer and are overwritten by its next call. Shapes include the batch dimension first.
/// A model may run two neighbours as one, with the same values (`Model.fuseLayers`: batch
/// norm followed by ReLU; in evaluation, a linear layer and the activation after it); both
/// stay in its list as the spec names them.
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
    /// Whether the layer works on input of any shape, reading the shape from the tensor it
    /// is given (activations, dropout, softmax); the others assume the input shape they were
    /// built for, and a standalone one refuses any other.
    var acceptsAnyShape: Bool { get }
    func forward(_ x: Tensor<Scalar>, training: Bool) throws(DLError) -> Tensor<Scalar>
    /// The evaluation-mode forward pass (`forward(x, training: false)`, the same values bit
    /// for bit) that changes nothing in the layer: its output and every workspace are in
    /// `scratch`, which belongs to one caller. Any number of threads may run it on one layer
    /// at once, each with its own scratch, as long as nothing trains or changes the layer
    /// meanwhile. Nothing is cached for backward.
    func infer(_ x: Tensor<Scalar>, scratch: InferenceScratch<Scalar>) throws(DLError) -> Tensor<Scalar>
    func backward(_ dy: Tensor<Scalar>, needInputGradient: Bool) throws(DLError) -> Tensor<Scalar>?
    /// Called once a training step is accepted (its loss finite, its update applied). A layer
    /// that keeps statistics of its training batches (batch norm's running mean and variance)
    /// folds the last `forward(training: true)` batch in here, not in `forward`, so a step
    /// that is refused changes none of the model's state. `forward` has already checked that
    /// the new values are finite.
    func commitTrainingStatistics()
    /// Scratch elements per sample beyond the output and its gradient (a convolution's
    /// columns), for the model's memory budget; a Double, as it may exceed Int.
    var workspacePerSample: Double { get }
}

extension Layer {
    public var parameters: [Parameter<Scalar>] { [] }
    public var buffers: [Parameter<Scalar>] { [] }
    public var workspacePerSample: Double { 0 }
    public var acceptsAnyShape: Bool { false }
    public func commitTrainingStatistics() {}
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
    /// No layer before this one in a model has parameters: it receives the model's input
    /// batch (at most passed through layers without parameters), and its input gradient is
    /// never asked for. A layer may specialise for that input (see `Linear`).
    public var seesModelInput = false

    public init(inputShape: [Int], index: Int, defaultInitializer: Initializer, random: RandomSource,
                parameterBudget: Int = Limits.maxModelParameters, seesModelInput: Bool = false) {
        self.inputShape = inputShape
        self.index = index
        self.defaultInitializer = defaultInitializer
        self.random = random
        self.parameterBudget = parameterBudget
        self.seesModelInput = seesModelInput
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

/// One caller's memory for one layer's `infer`: its output and workspaces, made on first
/// use and reused by every later call that gets the same scratch (a model keeps them in
/// pooled `InferenceContext`s), so repeated inference allocates nothing.
///
/// The scratches of a model's layers form a list (`next`) rather than an array: this is
/// walked on every prediction in code generic over T, where each access to an array of a
/// generic type looks that type up at run time.
public final class InferenceScratch<T: DLScalar> {
    /// The layer's output.
    public let output: Tensor<T>
    /// The next layer's scratch.
    let next: InferenceScratch<T>?
    /// More workspaces (`tensor(1)`, ...), for the layers that need them.
    private var more: [Tensor<T>] = []
    /// Max pooling's argmax, which inference computes and ignores.
    let indices = Buffer<Int32>()
    /// The sparse-input path's workspace (`Linear` on the model's input).
    let sparse = SparseInput.Workspace()
    /// A linear layer's transposed weight (`Linear.transposedWeight`).
    let weightCopy = WeightCopy<T>()

    public init(next: InferenceScratch<T>? = nil) throws(DLError) {
        output = try Tensor(shape: [0])
        self.next = next
    }

    /// The layer's workspace number `index` (1, 2, ...; 0 is `output`), empty the first time.
    public func tensor(_ index: Int) throws(DLError) -> Tensor<T> {
        if index == 0 { return output }
        while more.count < index { more.append(try Tensor(shape: [0])) }
        return more[index - 1]
    }
}
