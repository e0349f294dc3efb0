/// A single layer or loss used on its own, outside a model: what the tutorial's Python
/// classes (`Linear(784, 128)`, `ReLU()`, `MSELoss()`) are built on.
///
/// Data crosses as raw pointers of the element's dtype (`Float` or `Double`), 2-D as
/// (rows, cols): rows are samples, cols the features of each (an activation treats any
/// shape as its element count). Parameters and their gradients stay in the layer's own
/// memory, whose addresses never change, so callers may view and update them in place.
public protocol AnyStandaloneLayer: AnyObject {
    var type: String { get }
    var dtype: DType { get }
    var parameterNames: [String] { get }
    var parameterShapes: [[Int]] { get }
    /// One sample's input and output shapes when the layer was built for a fixed input
    /// shape (convolutions, pooling, batch norm); nil for layers that take any features.
    var sampleShapes: (input: [Int], output: [Int])? { get }
    /// Memory of parameter `index` (count = product of its shape), in the layer's dtype.
    func parameterData(_ index: Int) -> UnsafeMutableRawPointer
    /// Memory of the gradient of parameter `index`, filled by `backward`.
    func gradientData(_ index: Int) -> UnsafeMutableRawPointer
    /// Non-trainable state (batch norm's "running_mean", "running_var"): names, shapes and
    /// memory, in the layer's dtype, as for parameters.
    var bufferNames: [String] { get }
    var bufferShapes: [[Int]] { get }
    func bufferData(_ index: Int) -> UnsafeMutableRawPointer
    /// Output features per sample for `inputFeatures` input features, or an error naming
    /// what the layer expects.
    func outputFeatures(_ inputFeatures: Int) throws(DLError) -> Int
    /// y = layer(x) for x of (rows, cols); caches what backward needs. Returns y's cols.
    func forward(_ x: UnsafeRawPointer, rows: Int, cols: Int, into y: UnsafeMutableRawPointer, capacity: Int, training: Bool) throws(DLError) -> Int
    /// dx from dy (rows, cols of the last output); stores parameter gradients.
    func backward(_ dy: UnsafeRawPointer, rows: Int, cols: Int, into dx: UnsafeMutableRawPointer, capacity: Int) throws(DLError)
}

public final class StandaloneLayer<T: DLScalar>: AnyStandaloneLayer {
    public let layer: any Layer<T>
    private let x: Tensor<T>
    private let dy: Tensor<T>
    private var lastOutput: [Int]?
    private let inFeatures: Int?
    private let inputShape: [Int]?

    init(_ layer: any Layer<T>, inFeatures: Int?, inputShape: [Int]? = nil) throws(DLError) {
        self.layer = layer
        self.inFeatures = inFeatures
        self.inputShape = inputShape
        self.x = try Tensor(shape: [0])
        self.dy = try Tensor(shape: [0])
    }

    public var type: String { layer.type }
    public var dtype: DType { T.self == Float.self ? .float32 : .float64 }
    public var parameterNames: [String] { layer.parameters.map(\.name) }
    public var parameterShapes: [[Int]] { layer.parameters.map(\.value.shape) }
    public var sampleShapes: (input: [Int], output: [Int])? { inputShape.map { ($0, layer.outputShape) } }
    public func parameterData(_ index: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(layer.parameters[index].value.data) }
    public func gradientData(_ index: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(layer.parameters[index].grad.data) }
    public var bufferNames: [String] { layer.buffers.map(\.name) }
    public var bufferShapes: [[Int]] { layer.buffers.map(\.value.shape) }
    public func bufferData(_ index: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(layer.buffers[index].value.data) }

    public func outputFeatures(_ inputFeatures: Int) throws(DLError) -> Int {
        guard inputFeatures >= 1 else { throw .invalid("a sample needs at least one feature, got \(inputFeatures)") }
        guard let inFeatures else { return inputFeatures }       // elementwise
        guard inputFeatures == inFeatures else {
            let hint = inputShape == nil && !layer.acceptsAnyShape && type != "linear"
                ? " (it was built without an input shape; build it for its input with dl_layer_from_json_shaped)" : ""
            throw .invalid("\(type) expects \(inFeatures) features per sample, got \(inputFeatures)\(hint)")
        }
        return layer.outputShape.reduce(1, *)
    }

    public func forward(_ x: UnsafeRawPointer, rows: Int, cols: Int, into y: UnsafeMutableRawPointer, capacity: Int, training: Bool) throws(DLError) -> Int {
        guard rows >= 1, cols >= 1 else { throw .invalid("x must have at least one sample and one feature, got (\(rows), \(cols))") }
        let outCols = try outputFeatures(cols)
        let n = try checkedProduct(rows, cols, "x of (\(rows), \(cols))")
        let outN = try checkedProduct(rows, outCols, "y of (\(rows), \(outCols))")
        guard capacity >= outN else { throw .invalid("y has room for \(capacity) values, the output needs \(outN)") }
        let source = x.assumingMemoryBound(to: T.self)
        guard Kernels.allFinite(source, n) else { throw DLError(.numeric, "x contains NaN or infinity") }
        // Refused above, the call changed nothing and the last forward can still be followed
        // by its backward. From here the layer's saved input and caches are this call's, so
        // if it fails there is no forward for a backward to follow.
        lastOutput = nil
        // A shaped layer sees its samples' shape, as inside a model.
        try self.x.resize([rows] + (inputShape ?? [cols]))
        Kernels.convert(source, self.x.data, n)
        // The caller may have written the parameters' memory (dl_layer_param_data): caches
        // derived from them (a linear layer's transposed weight) must not be trusted.
        for parameter in layer.parameters { parameter.changed() }
        let out = try layer.forward(self.x, training: training)
        // Outside a model there is no step to refuse: a training pass updates the statistics.
        if training { layer.commitTrainingStatistics() }
        // The layer's own output is what is copied out: never more than it holds.
        guard out.count == outN else {
            throw DLError(.internal, "\(type) produced \(out.count) values for (\(rows), \(cols)) input, \(outN) were expected")
        }
        Kernels.convert(out.data, y.assumingMemoryBound(to: T.self), outN)
        lastOutput = [rows, outCols]
        return outCols
    }

    public func backward(_ dy: UnsafeRawPointer, rows: Int, cols: Int, into dx: UnsafeMutableRawPointer, capacity: Int) throws(DLError) {
        guard let lastOutput else { throw .invalid("\(type): backward called before forward") }
        guard [rows, cols] == lastOutput else {
            throw .invalid("\(type): dL/dy has shape (\(rows), \(cols)) but the last forward output was (\(lastOutput[0]), \(lastOutput[1]))")
        }
        let n = x.count
        guard capacity >= n else { throw .invalid("dx has room for \(capacity) values, the input had \(n)") }
        try self.dy.resize([rows] + (inputShape == nil ? [cols] : layer.outputShape))
        Kernels.convert(dy.assumingMemoryBound(to: T.self), self.dy.data, rows * cols)
        guard let g = try layer.backward(self.dy, needInputGradient: true) else {
            throw DLError(.internal, "\(type) returned no input gradient")
        }
        guard g.count == n else {
            throw DLError(.internal, "\(type) produced an input gradient of \(g.count) values, \(n) were expected")
        }
        Kernels.convert(g.data, dx.assumingMemoryBound(to: T.self), n)
    }
}

/// Builds a layer on its own from a spec layer object (linear layers need "in_features"),
/// or, given `inputShape`, for samples of that shape (what a conv2d, a pooling or a
/// batch_norm layer needs: (channels, height, width)), as a model would after its
/// earlier layers.
public func makeStandaloneLayer(json: String, dtype: DType, seed: UInt64,
                                inputShape: [Int]? = nil) throws(DLError) -> any AnyStandaloneLayer {
    let spec = try SpecParser.parseLayer(json: json)
    if let inputShape {
        guard !inputShape.isEmpty, inputShape.count <= 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw .invalid("input shape \(inputShape) must have 1 to 3 positive dimensions")
        }
    }
    let shaped = try inputShape.map { (shape) throws(DLError) in try checkedCount(shape, "input shape \(shape)") }
    // Only some layer types take in_features, and 0 is its "not given".
    let given = spec.options["in_features"] == nil ? 0 : try spec.int("in_features")
    let declared = given > 0 ? given : shaped
    if spec.type == "linear" && declared == nil {
        throw DLError(.spec, "<string>: layer.in_features: a linear layer on its own needs its input size")
    }
    func build<T: DLScalar>(_: T.Type) throws(DLError) -> any AnyStandaloneLayer {
        guard let factory = LayerRegistry.factory(spec.type) else {
            throw DLError(.spec, "<string>: layer.type: unknown layer type \"\(spec.type)\"")
        }
        var context = LayerContext(inputShape: inputShape ?? [declared ?? 1], index: 0, defaultInitializer: .heNormal,
                                   rng: RandomGenerator(seed: seed))
        let layer: any Layer<T> = try factory.make(spec, &context)
        // Only a layer that works on any shape may take any number of features; any other
        // (flatten, reshape, batch_norm, ...) is held to the shape it was built for, here
        // one feature when no shape was given, so it can never read past its own buffers.
        var features = declared
        if features == nil && !layer.acceptsAnyShape { features = try checkedCount(context.inputShape, "input shape") }
        return try StandaloneLayer(layer, inFeatures: features, inputShape: inputShape)
    }
    switch dtype {
    case .float32: return try build(Float.self)
    case .float64: return try build(Double.self)
    }
}

/// A loss on its own: `forward` computes the mean loss and its gradient, `backward` hands the
/// gradient out.
public protocol AnyStandaloneLoss: AnyObject {
    var type: String { get }
    var isClassification: Bool { get }
    func forward(_ pred: UnsafeRawPointer, rows: Int, cols: Int, labels: UnsafePointer<Int32>?, targets: UnsafeRawPointer?) throws(DLError) -> Double
    func backward(into grad: UnsafeMutableRawPointer, capacity: Int) throws(DLError)
}

public final class StandaloneLoss<T: DLScalar>: AnyStandaloneLoss {
    public let loss: Loss<T>
    private let pred: Tensor<T>
    private let targets: Tensor<T>
    private let grad: Tensor<T>
    private var ready = false

    init(_ loss: Loss<T>) throws(DLError) {
        self.loss = loss
        self.pred = try Tensor(shape: [0])
        self.targets = try Tensor(shape: [0])
        self.grad = try Tensor(shape: [0])
    }

    public var type: String { loss.type }
    public var isClassification: Bool { loss.isClassification }

    public func forward(_ pred: UnsafeRawPointer, rows: Int, cols: Int, labels: UnsafePointer<Int32>?, targets: UnsafeRawPointer?) throws(DLError) -> Double {
        guard rows >= 1, cols >= 1 else { throw .invalid("predictions must be at least (1, 1), got (\(rows), \(cols))") }
        let n = try checkedProduct(rows, cols, "predictions of (\(rows), \(cols))")
        try self.pred.resize([rows, cols])
        Kernels.convert(pred.assumingMemoryBound(to: T.self), self.pred.data, n)
        let t: Targets<T>
        switch (labels, targets) {
        case (let l?, nil):
            guard loss.isClassification else {
                throw DLError(.unsupported, "the \(type) loss needs target values shaped like the predictions, not class labels")
            }
            try checkLabels(l, count: rows, classes: cols)
            t = .labels(l)
        case (nil, let v?):
            try self.targets.resize([rows, cols])
            Kernels.convert(v.assumingMemoryBound(to: T.self), self.targets.data, n)
            t = .values(UnsafePointer(self.targets.data))
        default:
            throw .invalid("pass exactly one of labels and targets")
        }
        guard Kernels.allFinite(self.pred.data, n) else { throw DLError(.numeric, "the predictions contain NaN or infinity") }
        if case .values(let v) = t, !Kernels.allFinite(v, n) { throw DLError(.numeric, "the targets contain NaN or infinity") }
        let value = try loss.compute(self.pred, t, grad: grad)
        ready = true
        return value
    }

    public func backward(into grad: UnsafeMutableRawPointer, capacity: Int) throws(DLError) {
        guard ready else { throw .invalid("\(type): backward called before forward") }
        guard capacity >= self.grad.count else { throw .invalid("grad has room for \(capacity) values, needs \(self.grad.count)") }
        Kernels.convert(self.grad.data, grad.assumingMemoryBound(to: T.self), self.grad.count)
    }
}

public func makeStandaloneLoss(json: String, dtype: DType) throws(DLError) -> any AnyStandaloneLoss {
    let spec = try SpecParser.parseLoss(json: json)
    switch dtype {
    case .float32: return try StandaloneLoss<Float>(try LossRegistry.make(spec))
    case .float64: return try StandaloneLoss<Double>(try LossRegistry.make(spec))
    }
}
