/// Updates a model's parameters from their gradients.
///
///     sgd:      p -= lr (g + wd p)                                  (momentum 0)
///               v = m v - lr (g + wd p); p += v                     (momentum m, the tutorial's form)
///     adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
///               p -= lr m_hat / (sqrt(v_hat) + eps), bias-corrected by step t
///     rmsprop:  s = rho s + (1 - rho) g^2;  p -= lr g / (sqrt(s) + eps)
///
/// Weight decay is L2 added to the gradient. State tensors ("slots") are kept per
/// parameter in the model's parameter order; checkpoints store them with `step`.
public final class Optimizer<T: DLScalar> {
    public enum Function: Sendable, Equatable {
        case sgd(momentum: Double)
        case adam(beta1: Double, beta2: Double, eps: Double)
        case rmsprop(rho: Double, eps: Double)
    }

    public let function: Function
    /// Learning rate; may change between steps.
    public var learningRate: Double
    public let weightDecay: Double
    /// Factor applied to the learning rate after each epoch (`Model.trainEpoch`).
    public let epochDecay: Double
    /// Number of updates applied so far (Adam's t).
    public internal(set) var step: Int = 0
    /// Per-parameter state: momentum's v, Adam's m and v, RMSprop's s.
    public let slots: [[Tensor<T>]]

    public init(_ function: Function, learningRate: Double, weightDecay: Double, epochDecay: Double = 1,
                parameters: [Parameter<T>]) throws(DLError) {
        self.function = function
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.epochDecay = epochDecay
        let slotCount: Int
        switch function {
        case .sgd(let m): slotCount = m == 0 ? 0 : 1
        case .adam: slotCount = 2
        case .rmsprop: slotCount = 1
        }
        var slots: [[Tensor<T>]] = []
        for p in parameters {
            var s: [Tensor<T>] = []
            for _ in 0..<slotCount { s.append(try Tensor(shape: p.value.shape)) }
            slots.append(s)
        }
        self.slots = slots
    }

    public var type: String {
        switch function {
        case .sgd: return "sgd"
        case .adam: return "adam"
        case .rmsprop: return "rmsprop"
        }
    }

    /// Names of the state tensors of one parameter, as stored in checkpoints.
    public var slotNames: [String] {
        switch function {
        case .sgd(let m): return m == 0 ? [] : ["velocity"]
        case .adam: return ["m", "v"]
        case .rmsprop: return ["square_avg"]
        }
    }

    /// Applies one update to every parameter from its `grad`.
    public func update(_ parameters: [Parameter<T>]) {
        step += 1
        let lr = T(learningRate), wd = T(weightDecay)
        for (i, p) in parameters.enumerated() {
            let n = p.value.count
            switch function {
            case .sgd(let m) where m == 0:
                Kernels.sgdStep(p.value.data, p.grad.data, n, lr: lr, weightDecay: wd)
            case .sgd(let m):
                Kernels.momentumStep(p.value.data, p.grad.data, slots[i][0].data, n, lr: lr, momentum: T(m), weightDecay: wd)
            case .adam(let b1, let b2, let eps):
                Kernels.adamStep(p.value.data, p.grad.data, slots[i][0].data, slots[i][1].data, n,
                                 lr: lr, beta1: T(b1), beta2: T(b2), eps: T(eps), weightDecay: wd, t: step)
            case .rmsprop(let rho, let eps):
                Kernels.rmspropStep(p.value.data, p.grad.data, slots[i][0].data, n, lr: lr, rho: T(rho), eps: T(eps),
                                    weightDecay: wd)
            }
        }
    }

    /// Restores the step counter (checkpoints).
    public func restore(step: Int) { self.step = step }
}

/// The optimizer types a spec can name.
public enum OptimizerRegistry {
    static let lr = OptionSpec("lr", .number(0...1e6), doc: "learning rate")
    static let wd = OptionSpec("weight_decay", .number(0...1e6), default: .double(0), doc: "L2 penalty added to the gradient")
    static let lrDecay = OptionSpec("lr_decay", .number(1e-6...1), default: .double(1),
                                    doc: "multiplies the learning rate at the end of every epoch (1 keeps it constant)")

    public static let kinds: [ComponentKind] = [
        ComponentKind("sgd", options: [
            lr, wd, lrDecay,
            OptionSpec("momentum", .numberHalfOpen(0..<1), default: .double(0), doc: "momentum factor; 0 is plain SGD"),
        ], doc: "stochastic gradient descent, optionally with momentum"),
        ComponentKind("adam", options: [
            lr, wd, lrDecay,
            OptionSpec("beta1", .numberHalfOpen(0..<1), default: .double(0.9)),
            OptionSpec("beta2", .numberHalfOpen(0..<1), default: .double(0.999)),
            OptionSpec("eps", .number(0...1), default: .double(1e-8)),
        ], doc: "Adam with bias correction"),
        ComponentKind("rmsprop", options: [
            lr, wd, lrDecay,
            OptionSpec("rho", .numberHalfOpen(0..<1), default: .double(0.99), doc: "decay of the squared-gradient average"),
            OptionSpec("eps", .number(0...1), default: .double(1e-8)),
        ], doc: "RMSprop"),
    ]

    public static func make<T: DLScalar>(_ spec: ComponentSpec, parameters: [Parameter<T>]) throws(DLError) -> Optimizer<T> {
        let function: Optimizer<T>.Function
        switch spec.type {
        case "sgd": function = .sgd(momentum: spec.double("momentum") ?? 0)
        case "adam": function = .adam(beta1: spec.double("beta1") ?? 0.9, beta2: spec.double("beta2") ?? 0.999, eps: spec.double("eps") ?? 1e-8)
        case "rmsprop": function = .rmsprop(rho: spec.double("rho") ?? 0.99, eps: spec.double("eps") ?? 1e-8)
        default: throw DLError(.spec, "\(spec.path).type: unknown optimizer \"\(spec.type)\"")
        }
        return try Optimizer(function, learningRate: spec.double("lr") ?? 0.01, weightDecay: spec.double("weight_decay") ?? 0,
                             epochDecay: spec.double("lr_decay") ?? 1, parameters: parameters)
    }
}
