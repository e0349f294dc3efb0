/// One way to draw a layer's initial weights: a type with its `kind` (name and one-line
/// doc) and its `fill`, listed once in `InitializerRegistry.rules`.
public protocol InitializerRule: Sendable {
    static var kind: ComponentKind { get }
    /// Fills `w` (the weights of a layer with fans `fanIn`, `fanOut`) from `rng`.
    static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator)
}

/// The initializers a spec can name ("init" at the top level and in layers).
public enum InitializerRegistry {
    public static let rules: [any InitializerRule.Type] = [
        HeNormal.self,
        HeUniform.self,
        XavierNormal.self,
        XavierUniform.self,
        Zeros.self,
    ]

    public static var kinds: [ComponentKind] { rules.map { $0.kind } }
}

/// A registered initializer, by its spec name ("he_normal"): what a spec's "init" holds.
public struct Initializer: RawRepresentable, CaseIterable, Equatable, Sendable {
    public let rule: any InitializerRule.Type
    public var rawValue: String { rule.kind.type }

    public init?(rawValue: String) {
        guard let rule = InitializerRegistry.rules.first(where: { $0.kind.type == rawValue }) else { return nil }
        self.rule = rule
    }

    public init(_ rule: any InitializerRule.Type) { self.rule = rule }

    public static var allCases: [Initializer] { InitializerRegistry.rules.map(Initializer.init) }

    public static func == (a: Initializer, b: Initializer) -> Bool { a.rawValue == b.rawValue }

    public func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        rule.fill(w, fanIn: fanIn, fanOut: fanOut, rng: &rng)
    }

    /// The spec's default.
    public static let heNormal = Initializer(HeNormal.self)
    public static let xavierNormal = Initializer(XavierNormal.self)
    public static let zeros = Initializer(Zeros.self)
}

/// w[i] = std * N(0, 1), drawn in order.
func fillNormal<T: DLScalar>(_ w: Tensor<T>, std: Double, rng: inout RandomGenerator) {
    let p = w.data
    for i in 0..<w.count { p[i] = T(rng.normal() * std) }
}

/// w[i] uniform in [-bound, bound), drawn in order.
func fillUniform<T: DLScalar>(_ w: Tensor<T>, bound: Double, rng: inout RandomGenerator) {
    let p = w.data
    for i in 0..<w.count { p[i] = T((2 * rng.uniform() - 1) * bound) }
}
