import RealModule

/// One learning-rate schedule a spec can name: the rate after t periods (epochs or
/// updates) of training, from the optimizer's base rate.
///
/// Adding a schedule is a new type conforming to this protocol plus one line in
/// `ScheduleRegistry.rules`. Rates are closed forms of t, so a run resumed from a
/// checkpoint (which stores the step and epoch counters) continues the schedule exactly.
public protocol ScheduleRule: Sendable {
    /// The spec's type name, options and one-line doc.
    static var kind: ComponentKind { get }
    /// The rule of a validated spec (the parser has filled in every option's default).
    init(_ spec: ComponentSpec) throws(DLError)
    /// The learning rate after `t` periods, from `base`.
    func rate(base: Double, t: Int) -> Double
}

/// The optimizer's schedule: a rule, and whether its periods are epochs or updates.
public struct LearningRateSchedule: Sendable {
    public let rule: any ScheduleRule
    /// Whether t counts updates (`"interval": "step"`) rather than epochs.
    public let perStep: Bool

    public init(_ rule: any ScheduleRule, perStep: Bool) {
        self.rule = rule
        self.perStep = perStep
    }

    public static let constant = LearningRateSchedule(ConstantRate(), perStep: false)

    /// The schedule of a validated "optimizer" object: its "schedule", or the older
    /// `lr_decay`, which is an exponential schedule per epoch.
    public init(optimizer spec: ComponentSpec) throws(DLError) {
        let schedule = try spec.component("schedule")
        let decay = try spec.double("lr_decay")
        if decay != 1 {
            guard schedule.type == ConstantRate.kind.type else {
                throw DLError(.spec, "\(spec.path): give either \"lr_decay\" or a \"schedule\", not both")
            }
            self.init(ExponentialRate(gamma: decay), perStep: false)
            return
        }
        let rule = try lookup(schedule.type, in: ScheduleRegistry.rules, kind: { $0.kind }, noun: "schedule",
                              path: schedule.path).init(schedule)
        self.init(rule, perStep: schedule.options["interval"] == .string("step"))
    }

    /// The rate after `step` updates and `epoch` epochs.
    public func rate(base: Double, step: Int, epoch: Int) -> Double {
        rule.rate(base: base, t: perStep ? step : epoch)
    }
}

/// The learning-rate schedules a spec can name.
public enum ScheduleRegistry {
    public static let rules: [any ScheduleRule.Type] = [
        ConstantRate.self,
        StepRate.self,
        ExponentialRate.self,
        CosineRate.self,
    ]

    public static var kinds: [ComponentKind] { rules.map { $0.kind } }

    /// Whether t counts epochs or updates; every schedule but the constant one takes it.
    static let interval = OptionSpec("interval", .choice(["epoch", "step"]), default: .string("epoch"),
                                     doc: "whether t counts epochs or optimizer updates")
}

/// The rate stays the base rate.
public struct ConstantRate: ScheduleRule {
    public static let kind = ComponentKind("constant", doc: "lr stays the optimizer's lr")
    public init() {}
    public init(_ spec: ComponentSpec) throws(DLError) {}
    public func rate(base: Double, t: Int) -> Double { base }
}

/// PyTorch's StepLR: lr = base gamma^floor(t / step_size).
public struct StepRate: ScheduleRule {
    public static let kind = ComponentKind("step", options: [
        OptionSpec("step_size", .positiveInt, doc: "periods between two decays"),
        OptionSpec("gamma", .number(0...1), default: .double(0.1), doc: "factor of each decay"),
        ScheduleRegistry.interval,
    ], doc: "lr = lr0 * gamma^floor(t / step_size) (PyTorch's StepLR)")

    public let stepSize: Int, gamma: Double

    public init(_ spec: ComponentSpec) throws(DLError) {
        (stepSize, gamma) = (try spec.int("step_size"), try spec.double("gamma"))
    }

    public func rate(base: Double, t: Int) -> Double { base * Double.pow(gamma, Double(t / stepSize)) }
}

/// PyTorch's ExponentialLR: lr = base gamma^t.
public struct ExponentialRate: ScheduleRule {
    public static let kind = ComponentKind("exponential", options: [
        OptionSpec("gamma", .number(0...1), doc: "factor applied every period"),
        ScheduleRegistry.interval,
    ], doc: "lr = lr0 * gamma^t (PyTorch's ExponentialLR)")

    public let gamma: Double

    public init(gamma: Double) { self.gamma = gamma }
    public init(_ spec: ComponentSpec) throws(DLError) { gamma = try spec.double("gamma") }

    public func rate(base: Double, t: Int) -> Double { base * Double.pow(gamma, Double(t)) }
}

/// Cosine annealing after an optional linear warm-up, as PyTorch's SequentialLR of
/// LinearLR(start_factor, total_iters=warmup) and CosineAnnealingLR(t_max, eta_min) with
/// milestone `warmup` (both in their closed forms):
///
///     t < warmup:              lr = base (f + (1 - f) t / warmup),  f = warmup_start_factor
///     u = t - warmup <= t_max: lr = eta_min + (base - eta_min) (1 + cos(pi u / t_max)) / 2
///     later:                   lr = eta_min (PyTorch's would rise again)
public struct CosineRate: ScheduleRule {
    public static let kind = ComponentKind("cosine", options: [
        OptionSpec("t_max", .positiveInt, doc: "periods from the end of the warm-up to eta_min"),
        OptionSpec("eta_min", .number(0...1e6), default: .double(0), doc: "the last learning rate"),
        OptionSpec("warmup", .nonNegativeInt, default: .int(0), doc: "periods of linear warm-up before the cosine"),
        OptionSpec("warmup_start_factor", .number(1e-8...1), default: .double(1.0 / 3),
                   doc: "the warm-up starts at lr * this factor (PyTorch's LinearLR start_factor)"),
        ScheduleRegistry.interval,
    ], doc: "cosine annealing to eta_min over t_max periods, after an optional linear warm-up")

    public let tMax: Int, etaMin: Double, warmup: Int, startFactor: Double

    public init(_ spec: ComponentSpec) throws(DLError) {
        (tMax, etaMin) = (try spec.int("t_max"), try spec.double("eta_min"))
        (warmup, startFactor) = (try spec.int("warmup"), try spec.double("warmup_start_factor"))
    }

    public func rate(base: Double, t: Int) -> Double {
        if t < warmup { return base * (startFactor + (1 - startFactor) * Double(t) / Double(warmup)) }
        let u = t - warmup
        guard u < tMax else { return etaMin }
        return etaMin + (base - etaMin) * (1 + Double.cos(Double.pi * Double(u) / Double(tMax))) / 2
    }
}
