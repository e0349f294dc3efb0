/// Targets of one batch: class indices, or values with the prediction's shape.
public enum Targets<T: DLScalar> {
    /// One class index per sample, already checked to be in [0, classes).
    case labels(UnsafePointer<Int32>)
    /// One value per output element: regression targets, or one-hot / soft class targets.
    case values(UnsafePointer<T>)
}

/// Refuses a class label outside [0, classes), naming the sample.
func checkLabels(_ labels: UnsafePointer<Int32>, count: Int, classes: Int) throws(DLError) {
    for i in 0..<count where labels[i] < 0 || Int(labels[i]) >= classes {
        throw .invalid("label \(labels[i]) of sample \(i) is out of range: there are \(classes) classes (0...\(classes - 1))")
    }
}

/// One loss type a spec can name ("mse", "cross_entropy", ...): its options and its maths.
///
/// Adding a loss is a new type conforming to this protocol, with its loop in `Kernels`,
/// plus one line in `LossRegistry.functions`.
public protocol LossFunction: Sendable {
    /// The spec's type name, options and one-line doc.
    static var kind: ComponentKind { get }
    /// Whether targets may be class indices (a classifier's loss); others take only values.
    static var takesLabels: Bool { get }
    /// The loss of a validated spec (the parser has filled in every option's default).
    init(_ spec: ComponentSpec) throws(DLError)
    /// The mean loss of `pred` (rows, cols) against `targets`, writing dL/dpred into `grad`.
    /// Labels come only to a loss that `takesLabels`.
    func compute<T: DLScalar>(_ pred: UnsafePointer<T>, _ targets: Targets<T>, _ grad: UnsafeMutablePointer<T>,
                              rows: Int, cols: Int) throws(DLError) -> Double
}

extension LossFunction {
    public static var takesLabels: Bool { false }
}

/// A model's (or a standalone) loss: a `LossFunction` with the checks every loss shares.
public final class Loss<T: DLScalar> {
    public let function: any LossFunction

    public init(_ function: any LossFunction) { self.function = function }

    /// The spec's type name ("cross_entropy").
    public var type: String { Swift.type(of: function).kind.type }

    /// Whether targets may be class indices (and accuracy is the argmax's).
    public var isClassification: Bool { Swift.type(of: function).takesLabels }

    /// The mean loss of `pred` (B, C...) against `targets`, writing dL/dpred into `grad`.
    public func compute(_ pred: Tensor<T>, _ targets: Targets<T>, grad: Tensor<T>) throws(DLError) -> Double {
        if case .labels = targets, !isClassification {
            throw DLError(.unsupported, "the \(type) loss needs target values with the output's shape, not class labels")
        }
        try grad.resize(pred.shape)
        let rows = pred.shape[0]
        return try function.compute(pred.data, targets, grad.data, rows: rows, cols: rows == 0 ? 0 : pred.count / rows)
    }
}

/// The loss types a spec can name.
public enum LossRegistry {
    public static let functions: [any LossFunction.Type] = [
        CrossEntropy.self,
        BinaryCrossEntropy.self,
        MeanSquaredError.self,
        Huber.self,
    ]

    public static var kinds: [ComponentKind] { functions.map { $0.kind } }

    public static func make<T: DLScalar>(_ spec: ComponentSpec) throws(DLError) -> Loss<T> {
        Loss(try lookup(spec.type, in: functions, kind: { $0.kind }, noun: "loss", path: spec.path).init(spec))
    }
}

extension Targets {
    /// The target values; labels reach only losses that take them (`Loss.compute` checks).
    func values(_ loss: String) throws(DLError) -> UnsafePointer<T> {
        guard case .values(let t) = self else { throw DLError(.internal, "the \(loss) loss was given class labels") }
        return t
    }
}
