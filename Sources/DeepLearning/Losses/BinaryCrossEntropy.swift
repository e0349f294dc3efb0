/// Binary cross-entropy on logits (PyTorch's BCEWithLogitsLoss): each output is the logit
/// of an independent yes/no, so one output for a binary task or several for multi-label
/// rows; targets in [0, 1] have the output's shape. Mean over all outputs, in the stable
/// form that never takes the log of an underflowed probability:
///
///     loss = mean(max(x, 0) - x t + log(1 + exp(-|x|)));  dx = (sigmoid(x) - t) / N
public struct BinaryCrossEntropy: LossFunction {
    public static let kind = ComponentKind("binary_cross_entropy",
                                           doc: "sigmoid + binary cross-entropy per output, on logits; targets in [0, 1]")

    public init() {}
    public init(_ spec: ComponentSpec) throws(DLError) {}

    public func compute<T: DLScalar>(_ pred: UnsafePointer<T>, _ targets: Targets<T>, _ grad: UnsafeMutablePointer<T>,
                                     rows: Int, cols: Int) throws(DLError) -> Double {
        var bad = 0
        let t = try targets.values(Self.kind.type)
        guard let value = Kernels.binaryCrossEntropy(pred, t, grad, rows * cols, bad: &bad) else {
            throw .invalid("binary_cross_entropy targets must be in [0, 1], got \(t[bad]) at sample \(bad / max(cols, 1)), output \(bad % max(cols, 1))")
        }
        return value
    }
}
