import CDeepLearningKernels

/// Stochastic gradient descent, with the tutorial's momentum (Keras's form):
///
///     momentum 0:     p -= lr g
///     momentum m:     v = m v - lr g;  p += v
///     nesterov:       v = m v - lr g;  p += m v - lr g
///
/// with g the gradient plus `weight_decay * p`. PyTorch keeps b = -v / lr instead
/// (b = m b + g; p -= lr b, or p -= lr (g + m b) with nesterov): the same steps while the
/// learning rate is constant; when a schedule changes it, here the velocity keeps the
/// earlier rates' steps, there the next rate rescales them.
public struct SGD: OptimizerRule {
    public static let kind = ComponentKind("sgd", options: OptimizerRegistry.shared + [
        OptimizerRegistry.l2,
        OptionSpec("momentum", .numberHalfOpen(0..<1), default: .double(0), doc: "momentum factor; 0 is plain SGD"),
        OptionSpec("nesterov", .bool, default: .bool(false), doc: "Nesterov momentum (needs momentum > 0)"),
    ], doc: "stochastic gradient descent, optionally with (Nesterov) momentum")

    public let momentum: Double
    public let nesterov: Bool
    public let weightDecay: Double

    public init(momentum: Double, nesterov: Bool, weightDecay: Double) {
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }

    public init(_ spec: ComponentSpec) throws(DLError) {
        self.init(momentum: try spec.double("momentum"), nesterov: try spec.bool("nesterov"),
                  weightDecay: try spec.double("weight_decay"))
        if nesterov && momentum == 0 {
            throw DLError(.spec, "\(spec.path).nesterov: Nesterov momentum needs a momentum above 0")
        }
    }

    public var slotNames: [String] { momentum == 0 ? [] : ["velocity"] }

    public func configure(_ u: inout dlk_update) {
        u.kind = Int32(momentum == 0 ? DLK_SGD : nesterov ? DLK_NESTEROV : DLK_MOMENTUM)
        u.momentum = momentum
        u.l2 = weightDecay
    }
}
