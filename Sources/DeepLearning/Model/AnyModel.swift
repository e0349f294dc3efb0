/// A model whatever its element type: what the C ABI, the Python bindings and the
/// command-line tool hold. `Model<Float>` and `Model<Double>` conform.
public protocol AnyModel: AnyObject {
    var spec: ModelSpec { get }
    var inputSize: Int { get }
    var outputSize: Int { get }
    var inputShape: [Int] { get }
    var outputShape: [Int] { get }
    var parameterCount: Int { get }
    var parameterNames: [String] { get }
    var parameterShapes: [[Int]] { get }
    /// Non-trainable state (batch norm's running statistics), named like parameters.
    var bufferNames: [String] { get }
    var bufferShapes: [[Int]] { get }
    /// Each layer's output shape for one sample.
    var layerOutputShapes: [[Int]] { get }
    var layerTypes: [String] { get }
    var learningRate: Double { get set }
    var stepCount: Int { get }
    var samplesSeen: Int { get set }
    var lastStepCorrect: Int? { get }
    var epoch: Int { get set }
    var isClassifier: Bool { get }

    func trainStep<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>) throws(DLError) -> Double
    func predict<S: DLScalar>(x: UnsafePointer<S>, count: Int, into out: UnsafeMutablePointer<S>) throws(DLError)
    func predictClasses<S: DLScalar>(x: UnsafePointer<S>, count: Int, into out: UnsafeMutablePointer<Int32>) throws(DLError)
    func evaluate<S: DLScalar>(x: UnsafePointer<S>, count: Int, targets: BatchTargets<S>,
                               progress: ProgressHandler?) throws(DLError) -> (loss: Double, accuracy: Double?)
    func readParameter<S: DLScalar>(_ index: Int, into out: UnsafeMutablePointer<S>, count: Int) throws(DLError)
    func writeParameter<S: DLScalar>(_ index: Int, from values: UnsafePointer<S>, count: Int) throws(DLError)
    func readBuffer<S: DLScalar>(_ index: Int, into out: UnsafeMutablePointer<S>, count: Int) throws(DLError)
    func writeBuffer<S: DLScalar>(_ index: Int, from values: UnsafePointer<S>, count: Int) throws(DLError)
    /// Sets the input transform (stored in the spec, so checkpoints keep it).
    func setPreprocessing(_ p: Preprocessing) throws(DLError)
    /// Saves a checkpoint atomically (see `Checkpoint`).
    func save(to path: String) throws(DLError)
    /// A deep, independent copy.
    func clone() throws(DLError) -> any AnyModel
    /// Gradient check in float64 on a copy; this model is not changed.
    func gradientCheck<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>, limit: Int,
                                    tolerance: GradientCheck.Tolerance) throws(DLError) -> [GradientCheck.Entry]
}

extension AnyModel {
    /// `evaluate(x:count:targets:progress:)` without progress reports.
    public func evaluate<S: DLScalar>(x: UnsafePointer<S>, count: Int, targets: BatchTargets<S>) throws(DLError) -> (loss: Double, accuracy: Double?) {
        try evaluate(x: x, count: count, targets: targets, progress: nil)
    }
}

extension Model: AnyModel {
    public var parameterNames: [String] { parameters.map(\.name) }
    public var parameterShapes: [[Int]] { parameters.map(\.value.shape) }
    public var bufferNames: [String] { buffers.map(\.name) }
    public var bufferShapes: [[Int]] { buffers.map(\.value.shape) }
    public var layerOutputShapes: [[Int]] { layers.map(\.outputShape) }
    public var layerTypes: [String] { layers.map(\.type) }
    public var learningRate: Double {
        get { optimizer.learningRate }
        set { optimizer.baseLearningRate = newValue }
    }
    public var stepCount: Int { optimizer.step }
    public var isClassifier: Bool { loss.isClassification }

    public func clone() throws(DLError) -> any AnyModel { try converted(to: T.self) }

    public func gradientCheck<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>, limit: Int,
                                           tolerance: GradientCheck.Tolerance = .standard) throws(DLError) -> [GradientCheck.Entry] {
        try converted(to: Double.self).checkGradients(x: x, batch: batch, targets: targets, limit: limit, tolerance: tolerance)
    }
}

/// Builds a model of the spec's dtype. Errors name the spec's source, as parse errors do.
/// `parameterBudget` caps its trainable scalars (see `Model.init(spec:parameterBudget:)`).
public func makeModel(spec: ModelSpec, parameterBudget: Int = Limits.maxModelParameters) throws(DLError) -> any AnyModel {
    do throws(DLError) {
        switch spec.dtype {
        case .float32: return try Model<Float>(spec: spec, parameterBudget: parameterBudget)
        case .float64: return try Model<Double>(spec: spec, parameterBudget: parameterBudget)
        }
    } catch {
        throw DLError(error.kind, "\(spec.source): \(error.message)")
    }
}
