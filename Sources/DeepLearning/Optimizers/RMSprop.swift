import CDeepLearningKernels

/// RMSprop: s = rho s + (1 - rho) g^2;  p -= lr g / (sqrt(s) + eps), with g the gradient
/// plus `weight_decay * p` (torch.optim.RMSprop's alpha is rho here).
public struct RMSprop: OptimizerRule {
    public static let kind = ComponentKind("rmsprop", options: OptimizerRegistry.shared + [
        OptimizerRegistry.l2,
        OptionSpec("rho", .numberHalfOpen(0..<1), default: .double(0.99), doc: "decay of the squared-gradient average"),
        OptimizerRegistry.eps,
    ], doc: "RMSprop")

    public let rho: Double, eps: Double, weightDecay: Double

    public init(rho: Double, eps: Double, weightDecay: Double) {
        (self.rho, self.eps, self.weightDecay) = (rho, eps, weightDecay)
    }

    public init(_ spec: ComponentSpec) throws(DLError) {
        self.init(rho: try spec.double("rho"), eps: try spec.double("eps"), weightDecay: try spec.double("weight_decay"))
    }

    public var slotNames: [String] { ["square_avg"] }

    public func configure(_ u: inout dlk_update) {
        u.kind = Int32(DLK_RMSPROP)
        (u.rho, u.eps, u.l2) = (rho, eps, weightDecay)
    }
}
