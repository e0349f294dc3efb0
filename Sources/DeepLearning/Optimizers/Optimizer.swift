import CDeepLearningKernels

/// One optimizer type a spec can name ("sgd", "adam", ...): its options and its update rule.
///
/// The rule's arithmetic is in C (`dlk_update`, optimizers.c: one implementation per element
/// type); a rule says which formula it uses, with which constants, and which state tensors
/// it keeps per parameter. Adding an optimizer is a new type conforming to this protocol
/// plus one line in `OptimizerRegistry.rules` (and, for a new formula, a case in
/// optimizers.c).
public protocol OptimizerRule: Sendable {
    /// The spec's type name, options and one-line doc.
    static var kind: ComponentKind { get }
    /// The rule of a validated spec (the parser has filled in every option's default).
    init(_ spec: ComponentSpec) throws(DLError)
    /// Names of the state tensors kept per parameter, as checkpoints store them.
    var slotNames: [String] { get }
    /// Sets the kernel's kind and the rule's constants; the optimizer sets `lr`, `step`
    /// and `grad_scale`.
    func configure(_ update: inout dlk_update)
}

/// Updates a model's parameters from their gradients: the settings every optimizer shares
/// (learning rate and its schedule, gradient clipping) around one `OptimizerRule`.
///
/// Clipping follows `torch.nn.utils.clip_grad_norm_`: with N the L2 norm of all gradients
/// together, every gradient is scaled by min(1, clip_norm / (N + 1e-6)) before the rule
/// sees it (the stored gradients are left as they are). State tensors ("slots") are kept
/// per parameter in the model's parameter order; checkpoints store them with `step`.
public final class Optimizer<T: DLScalar> {
    public let rule: any OptimizerRule
    /// The spec's type name ("adam").
    public let type: String
    /// The rate the schedule starts from: the spec's `lr`, or what was set by hand.
    public var baseLearningRate: Double {
        didSet { reschedule() }
    }
    /// The rate of the next update.
    public private(set) var learningRate: Double
    public let schedule: LearningRateSchedule
    /// Largest L2 norm of all gradients together; 0 leaves gradients unclipped.
    public let clipNorm: Double
    /// Number of updates applied so far (Adam's t).
    public private(set) var step: Int = 0
    /// Epochs completed (the model's `epoch`): per-epoch schedules move on when it does.
    public var epoch: Int = 0 {
        didSet { reschedule() }
    }
    /// Per-parameter state: momentum's v, Adam's m and v, RMSprop's s.
    public let slots: [[Tensor<T>]]
    /// Runs the float32 update without its AVX2 loop (tests compare the two paths).
    var portable = false

    public init(_ rule: any OptimizerRule, learningRate: Double, schedule: LearningRateSchedule = .constant,
                clipNorm: Double = 0, parameters: [Parameter<T>]) throws(DLError) {
        self.rule = rule
        self.type = Swift.type(of: rule).kind.type
        self.baseLearningRate = learningRate
        self.schedule = schedule
        self.learningRate = schedule.rate(base: learningRate, step: 0, epoch: 0)
        self.clipNorm = clipNorm
        var slots: [[Tensor<T>]] = []
        for p in parameters {
            var s: [Tensor<T>] = []
            for _ in rule.slotNames { s.append(try Tensor(shape: p.value.shape)) }
            slots.append(s)
        }
        self.slots = slots
        tensorCapacity = parameters.count
        tensors = .allocate(capacity: parameters.count)
        tensors.initialize(repeating: dlk_tensors(), count: parameters.count)
        forgetBounds()
    }

    deinit { tensors.deallocate() }

    /// The kernel's description of each parameter tensor: the pointers, refilled by every
    /// update (reused, so a step allocates nothing), and the bounds on the magnitudes of the
    /// values and state that the last update left, which spare the next check their reads.
    private let tensors: UnsafeMutablePointer<dlk_tensors>
    private let tensorCapacity: Int

    /// Drops the bounds the last update left on the parameters' and state's magnitudes, so
    /// the next update reads them. Whatever writes parameters or state other than `update`
    /// calls this (`Model.writeParameter`, `restore`): a stale bound could let a step that
    /// overflows through.
    public func forgetBounds() {
        for i in 0..<tensorCapacity { tensors[i].bound = (-1, -1, -1) }
    }

    /// The optimizer a validated spec's "optimizer" object describes.
    public convenience init(spec: ComponentSpec, parameters: [Parameter<T>]) throws(DLError) {
        let rule = try OptimizerRegistry.rule(spec.type, path: spec.path).init(spec)
        try self.init(rule, learningRate: try spec.double("lr"), schedule: try LearningRateSchedule(optimizer: spec),
                      clipNorm: try spec.double("clip_norm"), parameters: parameters)
    }

    /// Names of the state tensors of one parameter, as stored in checkpoints.
    public var slotNames: [String] { rule.slotNames }

    /// Applies one update to every parameter from its `grad`, or none at all: when the update
    /// would make any parameter or state value NaN or infinite, throws `.numeric` naming the
    /// first such parameter, and nothing (parameters, state, `step`, the rate) has changed.
    ///
    /// Every parameter is checked before any is written (`dlk_update_all`: a bound from the
    /// largest magnitudes, one read of each array, and the exact rule only where the bound
    /// fails), so a refused step needs no copy to roll back.
    public func update(_ parameters: [Parameter<T>]) throws(DLError) {
        var u = dlk_update()
        rule.configure(&u)
        u.step = Int64(step + 1)
        u.lr = learningRate
        u.grad_scale = clipNorm > 0 ? min(1, clipNorm / (gradientNorm(parameters) + 1e-6)) : 1
        let count = min(parameters.count, slots.count, tensorCapacity)
        for i in 0..<count {
            let p = parameters[i], s = slots[i]
            tensors[i].p = UnsafeMutableRawPointer(p.value.data)
            tensors[i].s1 = s.first.map { UnsafeMutableRawPointer($0.data) }
            tensors[i].s2 = s.count > 1 ? UnsafeMutableRawPointer(s[1].data) : nil
            tensors[i].g = UnsafeRawPointer(p.grad.data)
            tensors[i].n = Int64(p.value.count)
        }
        let failed = T.self == Float.self ? dlk_update_all_f32(&u, tensors, Int64(count), portable ? 1 : 0)
                                          : dlk_update_all_f64(&u, tensors, Int64(count))
        guard failed < 0 else {
            let state = slotNames.isEmpty ? "" : " or its \(slotNames.joined(separator: "/"))"
            throw DLError(.numeric, "this step would make \(parameters[Int(failed)].name)\(state) NaN or infinite (the gradients, or the learning rate \(learningRate), are too large); nothing was changed")
        }
        for p in parameters.prefix(count) { p.changed() }
        step += 1
        reschedule()
    }

    /// Sets the rate of the next update from the schedule and the counters.
    private func reschedule() {
        learningRate = schedule.rate(base: baseLearningRate, step: step, epoch: epoch)
    }

    /// Restores the counters (checkpoints); the rate follows from them and the base rate.
    public func restore(step: Int, epoch: Int, baseLearningRate: Double) {
        forgetBounds()      // the state was just written
        self.step = step
        self.epoch = epoch
        self.baseLearningRate = baseLearningRate
    }

    /// The L2 norm of all gradients together, as one vector.
    func gradientNorm(_ parameters: [Parameter<T>]) -> Double {
        var sum = 0.0
        for p in parameters {
            let n = Int64(p.grad.count)
            sum += T.self == Float.self ? dlk_sum_squares_f32(f32(p.grad.data), n) : dlk_sum_squares_f64(f64(p.grad.data), n)
        }
        return sum.squareRoot()
    }

    // Where T is Float (or Double), its pointers as the C kernels' types.
    private func f32(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }
    private func f64(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Double> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Double.self)
    }
}

/// The optimizer types a spec can name.
public enum OptimizerRegistry {
    public static let rules: [any OptimizerRule.Type] = [
        SGD.self,
        Adam.self,
        AdamW.self,
        RMSprop.self,
    ]

    public static var kinds: [ComponentKind] { rules.map { $0.kind } }

    public static func rule(_ type: String, path: String) throws(DLError) -> any OptimizerRule.Type {
        try lookup(type, in: rules, kind: { $0.kind }, noun: "optimizer", path: path)
    }

    /// The options every optimizer takes, before its own.
    static let shared: [OptionSpec] = [
        OptionSpec("lr", .number(0...1e6), doc: "learning rate (where a schedule starts)"),
        OptionSpec("clip_norm", .number(0...1e12), default: .double(0),
                   doc: "scales all gradients together down to this L2 norm when above it (0: no clipping)"),
        OptionSpec("schedule", .component(noun: "schedule"),
                   default: .component(ComponentSpec(type: ConstantRate.kind.type)),
                   doc: "how the learning rate changes over training (an object or a schedule name)"),
        OptionSpec("lr_decay", .number(1e-6...1), default: .double(1),
                   doc: "older form of {\"type\": \"exponential\", \"gamma\": lr_decay}; 1 keeps the rate"),
    ]
    /// Weight decay as an L2 penalty added to the gradient.
    static let l2 = OptionSpec("weight_decay", .number(0...1e6), default: .double(0), doc: "L2 penalty: adds weight_decay * p to the gradient")
    static let eps = OptionSpec("eps", .number(0...1), default: .double(1e-8), doc: "added to the denominator")
}
