/// Mean squared error over all N outputs: loss = mean((p - t)^2); dp = 2 (p - t) / N.
public struct MeanSquaredError: LossFunction {
    public static let kind = ComponentKind("mse", doc: "mean squared error over all elements")

    public init() {}
    public init(_ spec: ComponentSpec) throws(DLError) {}

    public func compute<T: DLScalar>(_ pred: UnsafePointer<T>, _ targets: Targets<T>, _ grad: UnsafeMutablePointer<T>,
                                     rows: Int, cols: Int) throws(DLError) -> Double {
        Kernels.mse(pred, try targets.values(Self.kind.type), grad, rows * cols)
    }
}

/// Huber loss over all N outputs, d = p - t: mean of d^2 / 2 where |d| <= delta and
/// delta (|d| - delta / 2) elsewhere; dp = d or delta sign(d), over N.
public struct Huber: LossFunction {
    public static let kind = ComponentKind("huber", options: [
        OptionSpec("delta", .number(1e-12...1e12), default: .double(1.0), doc: "where the loss turns from quadratic to linear"),
    ], doc: "Huber loss: quadratic within delta, linear outside")

    public let delta: Double

    public init(delta: Double) { self.delta = delta }
    public init(_ spec: ComponentSpec) throws(DLError) { delta = try spec.double("delta") }

    public func compute<T: DLScalar>(_ pred: UnsafePointer<T>, _ targets: Targets<T>, _ grad: UnsafeMutablePointer<T>,
                                     rows: Int, cols: Int) throws(DLError) -> Double {
        Kernels.huber(pred, try targets.values(Self.kind.type), grad, rows * cols, delta: T(delta))
    }
}
