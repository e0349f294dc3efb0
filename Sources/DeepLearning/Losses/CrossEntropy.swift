/// Softmax of the logits, then the mean negative log-likelihood over samples, against class
/// indices or target rows (one-hot or probabilities), with PyTorch's label smoothing e:
/// the target becomes (1 - e) target + e / classes.
///
///     loss = -mean_r sum_c q[r, c] log softmax(x[r])[c];  dx = (softmax(x) - q) / rows
public struct CrossEntropy: LossFunction {
    public static let kind = ComponentKind("cross_entropy", options: [
        OptionSpec("label_smoothing", .number(0...1), default: .double(0),
                   doc: "e: the target becomes (1 - e) target + e / classes (PyTorch's definition)"),
    ], doc: "softmax + negative log likelihood; targets are class indices or one-hot rows")
    public static var takesLabels: Bool { true }

    public let labelSmoothing: Double

    public init(labelSmoothing: Double) { self.labelSmoothing = labelSmoothing }
    public init(_ spec: ComponentSpec) throws(DLError) { labelSmoothing = try spec.double("label_smoothing") }

    public func compute<T: DLScalar>(_ pred: UnsafePointer<T>, _ targets: Targets<T>, _ grad: UnsafeMutablePointer<T>,
                                     rows: Int, cols: Int) throws(DLError) -> Double {
        switch targets {
        case .labels(let labels):
            return Kernels.crossEntropyLabels(pred, labels, grad, rows: rows, cols: cols, smoothing: labelSmoothing)
        case .values(let t):
            return Kernels.crossEntropyDense(pred, t, grad, rows: rows, cols: cols, smoothing: labelSmoothing)
        }
    }
}
