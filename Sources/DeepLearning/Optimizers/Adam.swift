import CDeepLearningKernels

/// Adam (Kingma & Ba) with bias correction, t the 1-based step:
///
///     m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///     p -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// with g the gradient plus `weight_decay * p` (an L2 penalty, as torch.optim.Adam).
public struct Adam: OptimizerRule {
    public static let kind = ComponentKind("adam", options: OptimizerRegistry.shared + [OptimizerRegistry.l2] + moments,
                                           doc: "Adam with bias correction; weight decay as an L2 penalty")
    /// beta1, beta2 and eps, as Adam and AdamW both take them.
    static let moments = [
        OptionSpec("beta1", .numberHalfOpen(0..<1), default: .double(0.9), doc: "decay of the gradient average"),
        OptionSpec("beta2", .numberHalfOpen(0..<1), default: .double(0.999), doc: "decay of the squared-gradient average"),
        OptimizerRegistry.eps,
    ]

    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double

    public init(beta1: Double, beta2: Double, eps: Double, weightDecay: Double) {
        (self.beta1, self.beta2, self.eps, self.weightDecay) = (beta1, beta2, eps, weightDecay)
    }

    public init(_ spec: ComponentSpec) throws(DLError) {
        self.init(beta1: try spec.double("beta1"), beta2: try spec.double("beta2"), eps: try spec.double("eps"),
                  weightDecay: try spec.double("weight_decay"))
    }

    public var slotNames: [String] { ["m", "v"] }

    public func configure(_ u: inout dlk_update) {
        u.kind = Int32(DLK_ADAM)
        (u.beta1, u.beta2, u.eps, u.l2) = (beta1, beta2, eps, weightDecay)
    }
}

/// AdamW (Loshchilov & Hutter), as torch.optim.AdamW: weight decay decoupled from the
/// gradient, p *= 1 - lr weight_decay before Adam's step on the plain gradient.
public struct AdamW: OptimizerRule {
    public static let kind = ComponentKind("adamw", options: OptimizerRegistry.shared + [
        OptionSpec("weight_decay", .number(0...1e6), default: .double(0.01),
                   doc: "decoupled: p *= 1 - lr * weight_decay before each step"),
    ] + Adam.moments, doc: "Adam with decoupled weight decay (PyTorch's AdamW)")

    public let adam: Adam

    public init(beta1: Double, beta2: Double, eps: Double, weightDecay: Double) {
        adam = Adam(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
    }

    public init(_ spec: ComponentSpec) throws(DLError) { adam = try Adam(spec) }

    public var slotNames: [String] { adam.slotNames }

    public func configure(_ u: inout dlk_update) {
        adam.configure(&u)
        (u.l2, u.decay) = (0, adam.weightDecay)
    }
}
