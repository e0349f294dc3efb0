import CDeepLearningKernels
import Glibc

/// Targets of a batch passed to a model: class indices, or values shaped like the output.
public enum BatchTargets<S: DLScalar> {
    /// `batch` class indices in [0, outputSize).
    case labels(UnsafePointer<Int32>)
    /// `batch * outputSize` values: regression targets, or one-hot/soft rows for cross-entropy.
    case values(UnsafePointer<S>)
}

extension BatchTargets {
    /// The targets from sample `samples` on, for `width` values per sample (labels: one each).
    func advanced(by samples: Int, width: Int) -> BatchTargets {
        switch self {
        case .labels(let labels): return .labels(labels + samples)
        case .values(let values): return .values(values + samples * width)
        }
    }
}

/// A sequential model: layers in order, a loss, an optimizer, and its own random generator.
///
/// Inputs and targets may be `Float` or `Double` whatever the model's own type `T`; they
/// are converted into reused buffers. Any number of threads may call `predict`,
/// `predictClasses` and `evaluate` on one model at once, as long as no thread trains or
/// changes it meanwhile (the C ABI enforces that): inference runs each layer's `infer` in an
/// `InferenceContext` of the caller's own, taken from a small pool the model keeps. Every
/// other use takes the model alone; separate models are independent. Nothing a caller
/// passes makes it trap: invalid input throws `DLError` and leaves the model as it was.
public final class Model<T: DLScalar> {
    /// Changed only by a use that has the model alone (the registry of handles sees to it),
    /// read by every prediction: no run-time exclusivity checks.
    @exclusivity(unchecked) public internal(set) var spec: ModelSpec
    public let layers: [any Layer<T>]
    public let loss: Loss<T>
    public let optimizer: Optimizer<T>
    /// Every trainable tensor, named "layers.<index>.<name>", in layer order.
    public let parameters: [Parameter<T>]
    /// Non-trainable state (running statistics), named like parameters.
    public let buffers: [Parameter<T>]
    /// The model's random generator, shared with the layers that draw while training.
    public let random: RandomSource
    /// The generator's state (checkpoints save and restore it).
    public var rng: RandomGenerator {
        get { random.generator }
        set { random.generator = newValue }
    }
    public let inputShape: [Int]
    public let outputShape: [Int]
    public let inputSize: Int
    public let outputSize: Int
    /// Index of the first layer with parameters (`layers.count` when none has any).
    let firstTrainableLayer: Int
    /// The first layer, when it can take a batch to predict before the preprocessing
    /// (`Linear.inferFolded`: the float32 `Linear` that keeps W^T).
    private let foldingLayer: Linear<T>?
    /// Batches to predict skip the preprocessing pass (`foldingLayer`) only while the
    /// preprocessing's offset (-mean/std) is at most this in magnitude: the product then sums
    /// the raw values times the multiplier, and a large offset taken out afterwards would
    /// cost digits that the preprocessed values keep (data far from its mean in units of
    /// its std, as 1000 +- 1).
    static var maxFoldedOffset: Double { 4 }
    /// Training counters, saved in checkpoints.
    public var samplesSeen: Int = 0
    /// For a classifier, how many samples of the last accepted train step its forward pass
    /// (before the update) classified right, as accuracy counts them; nil for regression.
    public internal(set) var lastStepCorrect: Int?
    /// Epochs completed; kept by the optimizer, whose per-epoch schedule follows it.
    public var epoch: Int {
        get { optimizer.epoch }
        set { optimizer.epoch = newValue }
    }

    /// Samples per forward pass in predict and evaluate: at most 4096, and few enough that
    /// the layers' output buffers stay near 2^25 values (128 MiB of float32) in all, as a
    /// CNN's feature maps are large. Worked out once, as summing the layers' shapes on every
    /// call would weigh on single-sample predictions.
    public let inferenceChunk: Int

    // Reused buffers (training and the gradient check).
    private let input: Tensor<T>
    private let targetValues: Tensor<T>
    let lossGrad: Tensor<T>
    /// Data-parallel training's reducer and packed buffer, when set (Distributed.swift).
    var distributedState: DistributedState<T>? = nil

    /// For each layer, whether `infer` passes over it: an activation that the linear layer
    /// before it applies (`fuseLayers`). Set when the model is built.
    @exclusivity(unchecked) private(set) var passedInInference: [Bool]

    /// Inference contexts not in use, and the lock that guards the list (held only to take
    /// or return one).
    private(set) var spareContext: InferenceContext<T>?   // read by tests
    private var idleContexts: [InferenceContext<T>] = []
    private let contextLock: UnsafeMutablePointer<pthread_mutex_t>
    /// Contexts kept for reuse: as many as callers that usually overlap; one made beyond
    /// that for a burst of callers is freed after its call.
    static var pooledContexts: Int { 4 }

    /// Builds a model from a validated spec, drawing initial weights from `spec.seed`.
    /// `parameterBudget` caps the trainable scalars (a checkpoint's loader passes what the
    /// file holds, so that a file naming a huge model is refused before allocating it).
    public init(spec: ModelSpec, parameterBudget: Int = Limits.maxModelParameters) throws(DLError) {
        self.spec = spec
        guard !spec.layers.isEmpty else { throw DLError(.spec, "layers: a model needs at least one layer") }
        let inSize = try checkedCount(spec.inputShape, "input shape \(spec.inputShape)")
        guard inSize > 0 else { throw DLError(.spec, "input: every dimension must be positive, got \(spec.inputShape)") }
        let random = RandomSource(RandomGenerator(seed: spec.seed))
        var context = LayerContext(inputShape: spec.inputShape, index: 0, defaultInitializer: spec.initializer, random: random,
                                   parameterBudget: min(max(parameterBudget, 0), Limits.maxModelParameters))
        var layers: [any Layer<T>] = []
        var parameters: [Parameter<T>] = []
        var buffers: [Parameter<T>] = []
        let budget = Double(spec.memoryBudget) * 1048576
        var need = Double(inSize)               // elements per sample: the input, then each layer's
        for (i, layerSpec) in spec.layers.enumerated() {
            guard let factory = LayerRegistry.factory(layerSpec.type) else {
                throw DLError(.spec, "layers[\(i)].type: unknown layer type \"\(layerSpec.type)\"")
            }
            context = LayerContext(inputShape: context.inputShape, index: i, defaultInitializer: spec.initializer,
                                   random: random, parameterBudget: context.parameterBudget,
                                   seesModelInput: parameters.isEmpty)
            let layer: any Layer<T> = try factory.make(layerSpec, &context)
            need += try Self.checkMemory(layer, i, need, budget: budget, megabytes: spec.memoryBudget)
            for p in layer.parameters { p.name = "layers.\(i).\(p.name)"; parameters.append(p) }
            for b in layer.buffers { b.name = "layers.\(i).\(b.name)"; buffers.append(b) }
            layers.append(layer)
            context = LayerContext(inputShape: layer.outputShape, index: i + 1, defaultInitializer: spec.initializer,
                                   random: random, parameterBudget: context.parameterBudget)
        }
        self.passedInInference = Self.fuseLayers(layers)
        self.layers = layers
        self.firstTrainableLayer = layers.firstIndex { !$0.parameters.isEmpty } ?? layers.count
        self.foldingLayer = (layers.first as? Linear<T>).flatMap { $0.sparseInput == nil ? nil : $0 }
        self.parameters = parameters
        self.buffers = buffers
        self.random = random
        self.inputShape = spec.inputShape
        self.inputSize = inSize
        self.outputShape = context.inputShape
        self.outputSize = try checkedCount(context.inputShape, "output shape")
        let perSample = layers.reduce(inSize) { $0 + $1.outputShape.reduce(1, *) }
        let inference = Double(perSample) + layers.reduce(0) { $0 + $1.workspacePerSample }
        let fitting = Int(min(4096, budget / (inference * Double(MemoryLayout<T>.size))))
        self.inferenceChunk = max(1, min(4096, (1 << 25) / max(perSample, 1), fitting))
        self.loss = try LossRegistry.make(spec.loss)
        if loss.isClassification && (outputShape.count != 1 || outputSize < 2) {
            throw DLError(.spec, "loss: cross_entropy needs a flat output of at least 2 classes, but the last layer outputs shape \(outputShape)")
        }
        self.optimizer = try Optimizer(spec: spec.optimizer, parameters: parameters)
        self.input = try Tensor(shape: [0])
        self.targetValues = try Tensor(shape: [0])
        self.lossGrad = try Tensor(shape: [0])
        self.contextLock = .allocate(capacity: 1)
        pthread_mutex_init(contextLock, nil)
    }

    deinit {
        pthread_mutex_destroy(contextLock)
        contextLock.deallocate()
    }

    /// Runs `body` with an inference context of this call's own: an idle one from the pool,
    /// or a new one when every pooled one is in use (returned to the pool afterwards while
    /// it holds fewer than `pooledContexts`).
    func withInferenceContext(_ body: (InferenceContext<T>) throws(DLError) -> Void) throws(DLError) {
        let context = try takeContext()
        do {
            try body(context)
        } catch {
            giveBack(context)
            throw error
        }
        giveBack(context)   // its last use: handed over without a retain (`consuming`)
    }

    // One idle context in a plain optional, the others in an array: a lone caller, the
    // common case, then touches no array (generic code looks an array's type up at run
    // time on every access).
    private func takeContext() throws(DLError) -> InferenceContext<T> {
        pthread_mutex_lock(contextLock)
        var idle = spareContext
        spareContext = nil
        if idle == nil, !idleContexts.isEmpty { idle = idleContexts.removeLast() }
        pthread_mutex_unlock(contextLock)
        if let idle { return idle }
        return try InferenceContext(layers: layers.count)
    }

    private func giveBack(_ context: consuming InferenceContext<T>) {
        pthread_mutex_lock(contextLock)
        if spareContext == nil {
            spareContext = consume context
        } else if idleContexts.count < Self.pooledContexts - 1 {
            idleContexts.append(context)
        }
        pthread_mutex_unlock(contextLock)
    }

    /// Runs the evaluation-mode `infer` of every layer from `first` on in `context`, except
    /// those the layer before applies (`passedInInference`); nothing in the model changes.
    func infer(_ x: Tensor<T>, _ context: InferenceContext<T>, from first: Int = 0) throws(DLError) -> Tensor<T> {
        var h = x
        var scratch = context.scratch
        for _ in 0..<first { scratch = scratch?.next }
        for i in first..<layers.count {   // by index: a slice of `layers` is one more retain a call
            guard let s = scratch else { throw DLError(.internal, "an inference context has fewer layers than its model") }
            if !passedInInference[i] { h = try layers[i].infer(h, scratch: s) }
            scratch = s.next
        }
        return h
    }

    /// Whether `trainEpoch` gathers shuffled batches on a background thread (see
    /// `BatchLoader`): nil decides by the CPUs left; tests force it on and off to compare.
    var backgroundLoading: Bool? = nil
    /// Whether the last `trainEpoch` did (tests).
    var loadedInBackground = false

    /// Elements per sample that `layer` (index `i`) adds to a training step: its output, the
    /// output's gradient and its workspace. Throws `.noMemory` naming the layer when, with the
    /// `before` elements of the input and the layers before it, one sample would exceed the
    /// budget; nothing has been allocated for activations then (layers allocate them on the
    /// first batch).
    private static func checkMemory(_ layer: any Layer<T>, _ i: Int, _ before: Double, budget: Double,
                                    megabytes: Int) throws(DLError) -> Double {
        let output = layer.outputShape.reduce(1.0) { $0 * Double($1) }
        let adds = 2 * output + layer.workspacePerSample
        let size = Double(MemoryLayout<T>.size)
        guard (before + adds) * size <= budget else {
            func mib(_ elements: Double) -> String {
                let m = elements * size / 1048576
                return m < 10 ? String(Double(Int(m * 100)) / 100) : String(Int(m))
            }
            throw DLError(.noMemory, "layers[\(i)] (\(layer.type)): output \(layer.outputShape) needs \(mib(adds)) MiB per sample with its gradient and workspace, \(mib(before + adds)) MiB with the layers before, beyond the memory budget of \(megabytes) MiB (the spec's \"memory_budget\")")
        }
        return adds
    }

    /// Total number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// The parameter or buffer with this name.
    public func tensor(named name: String) -> Parameter<T>? {
        parameters.first { $0.name == name } ?? buffers.first { $0.name == name }
    }

    // MARK: Forward and backward on tensors

    /// Layers computed as one, with the same values: batch norm followed by ReLU writes
    /// max(0, y) in its own pass and applies the ReLU's mask in its backward pass, and the
    /// ReLU layer hands tensors through (each direction a pass over the feature maps fewer).
    /// When 2x2 max pooling follows the ReLU, batch norm pools too (`BatchNorm.fusedPool`):
    /// the ReLU's output is never stored, and backward sends each window's gradient to its
    /// maximum while it computes batch norm's (no zeroed input gradient, no separate
    /// pass): the mnist_cnn step 12-14% faster; the gradients' sums then add the windows'
    /// maxima only, so they may differ from the layers apart in the last bits. In
    /// evaluation, a linear layer applies the elementwise activation that follows it to its
    /// own output (`Linear.inferenceActivation`), and `infer` passes over that activation's
    /// layer: a textured MNIST sample 3-5% faster. The layers stay in the list as the spec
    /// names them. Returns, for each layer, whether `infer` passes over it.
    private static func fuseLayers(_ layers: [any Layer<T>]) -> [Bool] {
        var skipped = [Bool](repeating: false, count: layers.count)
        for (i, (layer, next)) in zip(layers, layers.dropFirst()).enumerated() {
            if let norm = layer as? BatchNorm<T>, let relu = next as? Activation<ReLU, T> {
                norm.fusedReLU = true
                relu.absorbed = true
                if i + 2 < layers.count, let pool = layers[i + 2] as? Pool2D<T>, pool.mode == .max, pool.window.isPairwise,
                   norm.outputShape == [pool.channels, pool.window.height, pool.window.width] {
                    norm.fusedPool = pool.window
                    pool.absorbed = true
                }
            } else if let linear = layer as? Linear<T>, let activation = next as? any ActivationLayer {
                linear.inferenceActivation = activation.activation
                skipped[i + 1] = true
            }
        }
        return skipped
    }

    /// Undoes `fuseLayers`'s fusions for evaluation (tests compare the two ways).
    func unfuseInference() {
        for case let linear as Linear<T> in layers { linear.inferenceActivation = nil }
        passedInInference = [Bool](repeating: false, count: layers.count)
    }

    /// Undoes the pooling fused into batch norm (tests compare the two ways); batch norm
    /// and ReLU stay one.
    func unfusePooling() {
        for case let norm as BatchNorm<T> in layers { norm.fusedPool = nil }
        for case let pool as Pool2D<T> in layers { pool.absorbed = false }
    }

    /// Runs every layer. `training` selects training behaviour (dropout, batch statistics).
    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        var h = x
        for layer in layers { h = try layer.forward(h, training: training) }
        return h
    }

    /// Back-propagates dL/doutput through every layer, filling each parameter's `grad`.
    /// No input gradient is computed for the first layer with parameters, nor anything
    /// before it.
    public func backward(_ dy: Tensor<T>) throws(DLError) {
        // Layers before the first one with parameters (a leading reshape, say) need no
        // gradient at all, and the first trainable layer needs none for its input.
        let first = firstTrainableLayer
        var g = dy
        for i in stride(from: layers.count - 1, through: first, by: -1) {
            guard let dx = try layers[i].backward(g, needInputGradient: i > first) else { return }
            g = dx
        }
    }

    // MARK: Batches from caller memory

    /// Copies `batch` samples into the input buffer, converting to `T`, rejecting NaN/Inf.
    /// With `rows`, sample i is row `rows[i]` of `x` (a shuffled batch gathered in the same
    /// pass); otherwise samples are consecutive. `checked`: the caller has already refused
    /// non-finite values in all of `x`.
    func loadInput<S: DLScalar>(_ x: UnsafePointer<S>, rows: UnsafePointer<Int32>? = nil, batch: Int,
                                next: (rows: UnsafePointer<Int32>, count: Int)? = nil,
                                checked: Bool = false, into buffer: Tensor<T>? = nil) throws(DLError) -> Tensor<T> {
        let input: Tensor<T>
        if let buffer { input = buffer } else { input = self.input }   // not ??: generic over T, it costs a type lookup
        guard batch > 0 else { throw .invalid("batch size must be at least 1, got \(batch)") }
        let n = try checkedProduct(batch, inputSize, "input of \(batch) samples")
        try input.resize(batch: batch, sample: inputShape)
        let p = spec.preprocessing
        func load(_ src: UnsafePointer<S>, _ dst: UnsafeMutablePointer<T>, _ count: Int) {
            if p.isIdentity {
                Kernels.convert(src, dst, count)
            } else {
                Kernels.convertAffine(src, dst, count, T(p.multiplier), T(p.offset))
            }
        }
        var loadedFinite: Bool? = nil   // known when the load checked as it went
        if let rows, S.self == Float.self, T.self == Float.self {
            dlk_gather_rows_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), Int64(inputSize), rows,
                                Int64(batch), Float(p.multiplier), Float(p.offset), p.isIdentity ? 0 : 1,
                                UnsafeMutableRawPointer(input.data).assumingMemoryBound(to: Float.self),
                                next?.rows, Int64(next?.count ?? 0))
        } else if let rows {
            for i in 0..<batch { load(x + Int(rows[i]) * inputSize, input.data + i * inputSize, inputSize) }
        } else if S.self == Float.self, T.self == Float.self {   // loaded and checked in one pass
            loadedFinite = dlk_load_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self),
                                        UnsafeMutableRawPointer(input.data).assumingMemoryBound(to: Float.self),
                                        Int64(n), Float(p.multiplier), Float(p.offset), p.isIdentity ? 0 : 1) != 0
        } else {
            load(x, input.data, n)
        }
        guard checked || (loadedFinite ?? Kernels.allFinite(input.data, n)) else {
            throw DLError(.numeric, "the input contains NaN or infinite values")
        }
        return input
    }

    /// Validates targets for `batch` samples and converts values into `T`.
    func loadTargets<S: DLScalar>(_ targets: BatchTargets<S>, batch: Int, into buffer: Tensor<T>? = nil) throws(DLError) -> Targets<T> {
        let targetValues: Tensor<T>
        if let buffer { targetValues = buffer } else { targetValues = self.targetValues }
        switch targets {
        case .labels(let labels):
            guard loss.isClassification else {
                throw DLError(.unsupported, "the \(loss.type) loss needs target values (\(outputSize) per sample), not class labels")
            }
            try checkLabels(labels, count: batch, classes: outputSize)
            return .labels(labels)
        case .values(let values):
            let n = try checkedProduct(batch, outputSize, "targets of \(batch) samples")
            try targetValues.resize(batch: batch, sample: outputShape)
            Kernels.convert(values, targetValues.data, n)
            guard Kernels.allFinite(targetValues.data, n) else {
                throw DLError(.numeric, "the targets contain NaN or infinite values")
            }
            return .values(UnsafePointer(targetValues.data))
        }
    }

    /// One optimisation step on one mini-batch; returns the batch's mean loss (before the
    /// update). When the loss is not finite, throws `.numeric` and leaves the parameters as
    /// they were. Specialized for float32 (as `predict`): called through `AnyModel`, the
    /// generic code looked up the layers' existential type in the runtime's caches at every
    /// step (a fifth of a small model's step).
    @discardableResult
    @_specialize(where T == Float, S == Float)
    public func trainStep<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>) throws(DLError) -> Double {
        try trainStep(x: x, rows: nil, batch: batch, targets: targets)
    }

    /// `trainStep` on rows `rows[0..<batch]` of `x` (a shuffled mini-batch, gathered while
    /// it is converted), or on the first `batch` rows when `rows` is nil.
    func trainStep<S: DLScalar>(x: UnsafePointer<S>, rows: UnsafePointer<Int32>?, batch: Int,
                                next: (rows: UnsafePointer<Int32>, count: Int)? = nil,
                                targets: BatchTargets<S>) throws(DLError) -> Double {
        if let d = distributedState {
            return try distributedStep(d, batch: batch, targets: targets) { () throws(DLError) in
                try loadInput(x, rows: rows, batch: batch, next: next)
            }
        }
        return try trainStep(input: try loadInput(x, rows: rows, batch: batch, next: next), batch: batch, targets: targets)
    }

    /// `trainStep` on a batch already in an input tensor of this model's type (converted,
    /// preprocessed and checked).
    func trainStep<S: DLScalar>(input xt: Tensor<T>, batch: Int, targets: BatchTargets<S>) throws(DLError) -> Double {
        let t = try loadTargets(targets, batch: batch)
        let out = try forward(xt, training: true)
        let value = try loss.compute(out, t, grad: lossGrad)
        guard value.isFinite else {
            throw DLError(.numeric, "the loss is \(value) (training diverged, or the learning rate \(optimizer.learningRate) is too large); parameters were not updated")
        }
        try backward(lossGrad)
        try optimizer.update(parameters)
        for layer in layers { layer.commitTrainingStatistics() }
        lastStepCorrect = loss.isClassification ? Kernels.countArgmaxMatches(out.data, rows: batch, cols: outputSize, t) : nil
        samplesSeen += batch
        return value
    }

    /// The batch's loss and gradients without updating anything (gradient checks).
    public func lossAndGradients<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>, training: Bool = true) throws(DLError) -> Double {
        let xt = try loadInput(x, batch: batch)
        let t = try loadTargets(targets, batch: batch)
        let out = try forward(xt, training: training)
        let value = try loss.compute(out, t, grad: lossGrad)
        try backward(lossGrad)
        return value
    }

    /// The batch's loss only (no backward pass).
    public func lossValue<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>, training: Bool) throws(DLError) -> Double {
        let xt = try loadInput(x, batch: batch)
        let t = try loadTargets(targets, batch: batch)
        return try loss.compute(try forward(xt, training: training), t, grad: lossGrad)
    }

    /// Raw outputs of the last layer for `count` samples, in evaluation mode, written to
    /// `out` (`count * outputSize` values).
    /// Safe to call from several threads at once (see the type's documentation).
    @_specialize(where T == Float, S == Float)
    public func predict<S: DLScalar>(x: UnsafePointer<S>, count: Int, into out: UnsafeMutablePointer<S>) throws(DLError) {
        let checked = try checkInputBeforeChunks(x, count: count)
        try withInferenceContext { (context) throws(DLError) in
            try forEachChunk(count) { (start, rows) throws(DLError) in
                let y = try inferChunk(x + start * inputSize, rows: rows, checked: checked, context)
                Kernels.convert(y.data, out + start * outputSize, rows * outputSize)
            }
        }
    }

    /// The most likely class of each of `count` samples (argmax of the outputs). Safe to
    /// call from several threads at once, as `predict`.
    @_specialize(where T == Float, S == Float)
    public func predictClasses<S: DLScalar>(x: UnsafePointer<S>, count: Int, into out: UnsafeMutablePointer<Int32>) throws(DLError) {
        let checked = try checkInputBeforeChunks(x, count: count)
        try withInferenceContext { (context) throws(DLError) in
            try forEachChunk(count) { (start, rows) throws(DLError) in
                let y = try inferChunk(x + start * inputSize, rows: rows, checked: checked, context)
                Kernels.argmaxRows(y.data, rows: rows, cols: outputSize, out + start)
            }
        }
    }

    /// Mean loss over `count` samples and, for a classifier, the fraction classified right
    /// (nil for regression). Evaluation mode; nothing changes, and several threads may call
    /// it at once, as `predict`. `progress` is called after every chunk of `inferenceChunk`
    /// samples (its "batches"); when it throws, so does this.
    /// With a gradient reducer, a collective call on every rank (see `distributedEvaluate`).
    public func evaluate<S: DLScalar>(x: UnsafePointer<S>, count: Int, targets: BatchTargets<S>,
                                      progress: ProgressHandler?) throws(DLError) -> (loss: Double, accuracy: Double?) {
        if let reducer = distributedState?.reducer {
            return try distributedEvaluate(reducer, x: x, count: count, targets: targets, progress: progress)
        }
        return try evaluateLocally(x: x, count: count, targets: targets, progress: progress)
    }

    /// `evaluate` on this process's samples alone.
    func evaluateLocally<S: DLScalar>(x: UnsafePointer<S>, count: Int, targets: BatchTargets<S>,
                                      progress: ProgressHandler?) throws(DLError) -> (loss: Double, accuracy: Double?) {
        var lossSum = 0.0
        var correct = 0
        let chunk = inferenceChunk
        let chunks = count / chunk + (count % chunk == 0 ? 0 : 1)
        try withInferenceContext { (context) throws(DLError) in
            try forEachChunk(count) { (start, rows) throws(DLError) in
                let y = try inferChunk(x + start * inputSize, rows: rows, checked: false, context)
                let t = try loadTargets(targets.advanced(by: start, width: outputSize), batch: rows, into: context.targetValues)
                lossSum += try loss.compute(y, t, grad: context.lossGrad) * Double(rows)
                if loss.isClassification { correct += Kernels.countArgmaxMatches(y.data, rows: rows, cols: outputSize, t) }
                try progress?(EpochProgress(batchesDone: start / chunk + 1, batchCount: chunks, samplesDone: start + rows,
                                            meanLoss: lossSum / Double(start + rows),
                                            samplesCorrect: loss.isClassification ? correct : nil))
            }
        }
        let meanLoss = lossSum / Double(count)
        guard meanLoss.isFinite else {
            throw DLError(.numeric, "the loss is \(meanLoss) on these samples (the model's outputs overflow)")
        }
        return (meanLoss, loss.isClassification ? Double(correct) / Double(count) : nil)
    }

    /// The outputs of `rows` samples at `x` (caller memory), computed in `context`: from the
    /// raw samples when the first layer folds the preprocessing into its product
    /// (`foldingLayer`), else from a preprocessed copy (`loadInput`). Refuses NaN and
    /// infinity in x unless `checked`, before anything reaches the caller.
    private func inferChunk<S: DLScalar>(_ x: UnsafePointer<S>, rows: Int, checked: Bool,
                                         _ context: InferenceContext<T>) throws(DLError) -> Tensor<T> {
        let p = spec.preprocessing
        if let first = foldingLayer, S.self == T.self, let scratch = context.scratch, abs(p.offset) <= Self.maxFoldedOffset,
           case let multiplier = T(p.multiplier), multiplier.isNormal {
            let raw = UnsafeRawPointer(x).assumingMemoryBound(to: T.self)
            if let y = try first.inferFolded(raw: raw, rows: rows, multiplier: multiplier, offset: T(p.offset),
                                             checked: checked, scratch: scratch) {
                return try infer(y, context, from: 1)
            }
        }
        return try infer(try loadInput(x, batch: rows, checked: checked, into: context.input), context)
    }

    /// For `predict` and `predictClasses`: an input of more than one chunk is checked whole
    /// for NaN and infinity before any output is written (then true: the chunks' loads need
    /// not check again); a single chunk is checked as it loads (`loadInput`, in the same
    /// pass as the preprocessing), which is also before its output is written.
    private func checkInputBeforeChunks<S: DLScalar>(_ x: UnsafePointer<S>, count: Int) throws(DLError) -> Bool {
        guard count > inferenceChunk else { return false }
        try checkWholeInput(x, count: count)
        return true
    }

    /// Refuses NaN/Inf anywhere in `count` samples before any output is written, so a
    /// failed call leaves the caller's buffer untouched even when it spans several chunks.
    private func checkWholeInput<S: DLScalar>(_ x: UnsafePointer<S>, count: Int) throws(DLError) {
        guard count > 0 else { throw .invalid("the number of samples must be at least 1, got \(count)") }
        let n = try checkedProduct(count, inputSize, "input of \(count) samples")
        guard Kernels.allFinite(x, n) else { throw DLError(.numeric, "the input contains NaN or infinite values") }
    }

    private func forEachChunk(_ count: Int, _ body: (Int, Int) throws(DLError) -> Void) throws(DLError) {
        guard count > 0 else { throw .invalid("the number of samples must be at least 1, got \(count)") }
        var start = 0
        while start < count {
            let rows = min(inferenceChunk, count - start)
            try body(start, rows)
            start += rows
        }
    }

    // MARK: Conversion

    /// An independent copy of this model computing in `U`: parameters, buffers, optimizer
    /// state, random generator and counters. `converted(to: T.self)` is a deep clone.
    public func converted<U: DLScalar>(to: U.Type) throws(DLError) -> Model<U> {
        var s = spec
        s.dtype = U.self == Float.self ? .float32 : .float64
        let other = try Model<U>(spec: s)
        for (a, b) in zip(parameters + buffers, other.parameters + other.buffers) { a.copy(a.value, to: b, b.value) }
        for (i, (mine, theirs)) in zip(optimizer.slots, other.optimizer.slots).enumerated() {
            for (a, b) in zip(mine, theirs) { parameters[i].copy(a, to: other.parameters[i], b) }
        }
        other.optimizer.restore(step: optimizer.step, epoch: optimizer.epoch, baseLearningRate: optimizer.baseLearningRate)
        other.rng = rng
        other.samplesSeen = samplesSeen
        return other
    }

    // MARK: Parameters and buffers by index

    /// Copies parameter `index` into `out` (exactly its element count) as `S`.
    public func readParameter<S: DLScalar>(_ index: Int, into out: UnsafeMutablePointer<S>, count: Int) throws(DLError) {
        let p = try entry(parameters, "parameter", index, count: count)
        p.read(p.value, into: out)
    }

    /// Replaces parameter `index` with `count` values, refusing NaN/Inf (nothing changes then).
    public func writeParameter<S: DLScalar>(_ index: Int, from values: UnsafePointer<S>, count: Int) throws(DLError) {
        try write(try entry(parameters, "parameter", index, count: count), from: values, count: count)
        optimizer.forgetBounds()        // its bound on this tensor's magnitude no longer holds
    }

    /// Copies buffer `index` (running statistics, in `buffers` order) into `out` as `S`.
    public func readBuffer<S: DLScalar>(_ index: Int, into out: UnsafeMutablePointer<S>, count: Int) throws(DLError) {
        let b = try entry(buffers, "buffer", index, count: count)
        b.read(b.value, into: out)
    }

    /// Replaces buffer `index` with `count` values, refusing NaN/Inf (nothing changes then).
    public func writeBuffer<S: DLScalar>(_ index: Int, from values: UnsafePointer<S>, count: Int) throws(DLError) {
        try write(try entry(buffers, "buffer", index, count: count), from: values, count: count)
    }

    private func write<S: DLScalar>(_ p: Parameter<T>, from values: UnsafePointer<S>, count: Int) throws(DLError) {
        guard Kernels.allFinite(values, count) else {
            throw DLError(.numeric, "values for \(p.name) contain NaN or infinity; it was not changed")
        }
        p.write(p.value, from: values)
    }

    /// Entry `index` of `list` (parameters or buffers), whose element count must be `count`.
    private func entry(_ list: [Parameter<T>], _ noun: String, _ index: Int, count: Int) throws(DLError) -> Parameter<T> {
        guard index >= 0, index < list.count else {
            throw .invalid("\(noun) index \(index) is out of range: the model has \(list.count) \(noun) tensors")
        }
        let p = list[index]
        guard count == p.value.count else {
            throw .invalid("\(p.name) has \(p.value.count) values (shape \(p.value.shape)), but the buffer holds \(count)")
        }
        return p
    }
}

/// One caller's memory for inference on a model: the converted input, every layer's
/// `InferenceScratch`, and what `evaluate` needs (targets, the loss gradient it ignores). Made once and reused (see
/// `Model.withInferenceContext`), so repeated inference allocates nothing after its first
/// call.
final class InferenceContext<T: DLScalar> {
    let input: Tensor<T>
    /// The first layer's scratch; `next` leads to the others'.
    let scratch: InferenceScratch<T>?
    let targetValues: Tensor<T>
    let lossGrad: Tensor<T>

    init(layers: Int) throws(DLError) {
        input = try Tensor(shape: [0])
        var first: InferenceScratch<T>? = nil
        for _ in 0..<layers { first = try InferenceScratch(next: first) }
        scratch = first
        targetValues = try Tensor(shape: [0])
        lossGrad = try Tensor(shape: [0])
    }
}
