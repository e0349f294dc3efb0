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

/// A loss: the mean over the batch (or over elements) and its gradient.
///
///     cross_entropy: softmax + negative log likelihood, mean over samples;
///                    dpred = (softmax(pred) - onehot) / B
///     mse:           mean((pred - t)^2) over all N elements;  dpred = 2 (pred - t) / N
///     huber:         mean of 0.5 d^2 (|d| <= delta) or delta (|d| - delta / 2), d = pred - t;
///                    dpred = d or delta * sign(d), divided by N
public final class Loss<T: DLScalar> {
    public enum Function: Sendable, Equatable {
        case crossEntropy
        case mse
        case huber(delta: Double)
    }

    public let function: Function

    public init(_ function: Function) { self.function = function }

    public var type: String {
        switch function {
        case .crossEntropy: return "cross_entropy"
        case .mse: return "mse"
        case .huber: return "huber"
        }
    }

    /// Whether targets may be class indices (only cross-entropy, a classification loss).
    public var isClassification: Bool { function == .crossEntropy }

    /// The mean loss of `pred` (B, C...) against `targets`, writing dL/dpred into `grad`.
    public func compute(_ pred: Tensor<T>, _ targets: Targets<T>, grad: Tensor<T>) throws(DLError) -> Double {
        try grad.resize(pred.shape)
        let rows = pred.shape[0]
        let n = pred.count
        let cols = rows == 0 ? 0 : n / rows
        switch (function, targets) {
        case (.crossEntropy, .labels(let labels)):
            return Kernels.crossEntropyLabels(pred.data, labels, grad.data, rows: rows, cols: cols)
        case (.crossEntropy, .values(let t)):
            return Kernels.crossEntropyDense(pred.data, t, grad.data, rows: rows, cols: cols)
        case (.mse, .values(let t)):
            return Kernels.mse(pred.data, t, grad.data, n)
        case (.huber(let delta), .values(let t)):
            return Kernels.huber(pred.data, t, grad.data, n, delta: T(delta))
        case (_, .labels):
            throw DLError(.unsupported, "the \(type) loss needs target values with the output's shape, not class labels")
        }
    }
}

/// The loss types a spec can name.
public enum LossRegistry {
    public static let kinds: [ComponentKind] = [
        ComponentKind("cross_entropy", doc: "softmax + negative log likelihood; targets are class indices or one-hot rows"),
        ComponentKind("mse", doc: "mean squared error over all elements"),
        ComponentKind("huber", options: [
            OptionSpec("delta", .number(1e-12...1e12), default: .double(1.0), doc: "where the loss turns from quadratic to linear"),
        ], doc: "Huber loss: quadratic within delta, linear outside"),
    ]

    public static func make<T: DLScalar>(_ spec: ComponentSpec) throws(DLError) -> Loss<T> {
        switch spec.type {
        case "cross_entropy": return Loss(.crossEntropy)
        case "mse": return Loss(.mse)
        case "huber": return Loss(.huber(delta: spec.double("delta") ?? 1))
        default: throw DLError(.spec, "\(spec.path).type: unknown loss \"\(spec.type)\"")
        }
    }
}
