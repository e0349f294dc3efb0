/// A model's architecture and training setup, as read from a JSON spec file.
///
/// `SpecParser` builds it from JSON with json-c and validates every value; the registries
/// (`LayerRegistry`, `LossRegistry`, `OptimizerRegistry`) say which types exist and which
/// options each one takes. `Model(spec:)` turns it into a model.
public struct ModelSpec: Sendable {
    /// The spec format this library reads and writes.
    public static let formatVersion = 1

    public var formatVersion: Int = ModelSpec.formatVersion
    public var name: String = ""
    /// Shape of one sample: `[features]` for dense input, `[channels, height, width]` for images.
    public var inputShape: [Int]
    public var layers: [ComponentSpec]
    public var loss: ComponentSpec
    public var optimizer: ComponentSpec
    /// Initializer for layers that do not name one.
    public var initializer: Initializer = .heNormal
    public var seed: UInt64 = 0
    public var dtype: DType = .float32
    /// How raw inputs are transformed before the first layer, in training and prediction alike.
    public var preprocessing = Preprocessing()
    /// MiB of activations and workspaces a forward pass may hold (the spec's "memory_budget").
    public var memoryBudget = ModelSpec.defaultMemoryBudget
    /// 1 GiB: far above what the tutorial's models need per sample (the MNIST CNN about
    /// 0.2 MiB with its gradients), far below what takes a machine down.
    public static let defaultMemoryBudget = 1024
    /// The JSON text the spec came from (stored verbatim in checkpoints).
    public var json: String = ""
    /// Where the spec came from, for messages: a file path or "<string>".
    public var source: String = "<string>"

    public init(inputShape: [Int], layers: [ComponentSpec], loss: ComponentSpec, optimizer: ComponentSpec) {
        self.inputShape = inputShape
        self.layers = layers
        self.loss = loss
        self.optimizer = optimizer
    }
}

/// The affine input transform x' = (x * scale - mean) / std, as the tutorial prepares MNIST
/// (scale 1/255, then the training set's global mean and std). Part of the spec, so a
/// checkpoint carries it and predictions apply the same transform as training did.
public struct Preprocessing: Sendable, Equatable {
    public var scale: Double = 1
    public var mean: Double = 0
    public var std: Double = 1

    public init(scale: Double = 1, mean: Double = 0, std: Double = 1) {
        self.scale = scale
        self.mean = mean
        self.std = std
    }

    public var isIdentity: Bool { self == Preprocessing() }
    /// x' = x * multiplier + offset
    public var multiplier: Double { scale / std }
    public var offset: Double { -mean / std }

    /// The value rules of every preprocessing a model can hold: scale and std in
    /// [1e-12, 1e12], mean in [-1e12, 1e12]. Within them x * scale / std and mean / std stay
    /// within 1e24, far inside float32's range, so the folded multiplier and offset are finite.
    public static let scaleRange = 1e-12...1e12
    public static let meanRange = -1e12...1e12
    public static let stdRange = 1e-12...1e12

    /// The spec's "preprocessing" object, its ranges the value rules above.
    public static let kind = ComponentKind("preprocessing", options: [
        OptionSpec("scale", .number(scaleRange), default: .double(1), doc: "multiplies raw inputs first (1/255 for bytes)"),
        OptionSpec("mean", .number(meanRange), default: .double(0), doc: "subtracted after scaling"),
        OptionSpec("std", .number(stdRange), default: .double(1), doc: "divides last"),
    ], doc: "x' = (x * scale - mean) / std")

    /// Throws unless every value obeys the rules. The one check of a preprocessing, whoever
    /// sets it: the spec parser (after its per-option ranges, the same table), the model's
    /// `setPreprocessing`, `Standardizer` and the checkpoint reader (through the parser), so
    /// a model holds only what it can save and load again.
    public func validate(path: String = "preprocessing") throws(DLError) {
        for (name, value, range) in [("scale", scale, Self.scaleRange), ("mean", mean, Self.meanRange),
                                     ("std", std, Self.stdRange)] where !(value.isFinite && range.contains(value)) {
            throw .invalid("\(path).\(name): expected \(OptionKind.number(range).expectation), got \(value)")
        }
    }
}

/// One layer, loss, optimizer or schedule of a spec: its type and its validated options.
public struct ComponentSpec: Sendable, Equatable {
    public var type: String
    public var options: [String: SpecValue]
    /// JSON path of the object, for messages: "layers[2]", "loss", "optimizer".
    public var path: String

    public init(type: String, options: [String: SpecValue] = [:], path: String = "") {
        self.type = type
        self.options = options
        self.path = path
    }

    /// The value of a declared option. The parser fills in the default of every option a
    /// kind declares, so a spec it returned has them all; a hand-built spec lacking one is
    /// refused here rather than read with a second, different default.
    public func value(_ key: String) throws(DLError) -> SpecValue {
        guard let value = options[key] else {
            throw DLError(.spec, "\(path.isEmpty ? type : path).\(key): missing (build component specs with SpecParser, which fills in defaults)")
        }
        return value
    }

    /// An integer option (validated by the parser against its `OptionSpec`).
    public func int(_ key: String) throws(DLError) -> Int {
        if case .int(let v) = try value(key) { return v }
        throw mistyped(key, "an integer")
    }

    /// A number option; integers are accepted as numbers.
    public func double(_ key: String) throws(DLError) -> Double {
        switch try value(key) {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: throw mistyped(key, "a number")
        }
    }

    public func bool(_ key: String) throws(DLError) -> Bool {
        if case .bool(let v) = try value(key) { return v }
        throw mistyped(key, "true or false")
    }

    public func string(_ key: String) throws(DLError) -> String {
        if case .string(let v) = try value(key) { return v }
        throw mistyped(key, "a string")
    }

    /// A list of integers; one integer is a list of one.
    public func ints(_ key: String) throws(DLError) -> [Int] {
        switch try value(key) {
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw mistyped(key, "an integer or a list of integers")
        }
    }

    /// A choice option as the enum whose raw values it lists.
    public func choice<E: RawRepresentable>(_ key: String, _: E.Type) throws(DLError) -> E where E.RawValue == String {
        if let v = E(rawValue: try string(key)) { return v }
        throw mistyped(key, "one of \(E.self)'s names")
    }

    /// A nested component (an optimizer's schedule).
    public func component(_ key: String) throws(DLError) -> ComponentSpec {
        if case .component(let v) = try value(key) { return v }
        throw mistyped(key, "an object with a \"type\"")
    }

    private func mistyped(_ key: String, _ expected: String) -> DLError {
        DLError(.spec, "\(path.isEmpty ? type : path).\(key): expected \(expected)")
    }
}

/// A validated option value.
public enum SpecValue: Sendable, Equatable {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])
    case component(ComponentSpec)
}

/// What values an option accepts. The parser checks these and writes messages like
/// `layers[2].units: expected a positive integer, got -3`.
public enum OptionKind: Sendable {
    /// An integer >= 1 (and at most `Limits.maxTensorElements`).
    case positiveInt
    /// An integer >= 0.
    case nonNegativeInt
    /// A finite number in the closed range (integers accepted).
    case number(ClosedRange<Double>)
    /// A finite number in [lower, upper) (for rates such as dropout's).
    case numberHalfOpen(Range<Double>)
    case bool
    /// One of the listed strings.
    case choice([String])
    /// A positive integer, or a list of `count` positive integers (kernel sizes, strides).
    case positiveInts(count: Int)
    /// A non-negative integer, or a list of `count` of them (padding).
    case nonNegativeInts(count: Int)
    /// A component of the registry of `noun` ("schedule"): an object with a "type", or
    /// just the type's name. (The registry is looked up by name, not held here: a global
    /// holding an array inside an enum payload hides the pointer from leak checkers.)
    case component(noun: String)

    /// How the expectation reads in a message ("a positive integer").
    public var expectation: String {
        switch self {
        case .positiveInt: return "a positive integer"
        case .nonNegativeInt: return "a non-negative integer"
        case .number(let r): return "a number in [\(format(r.lowerBound)), \(format(r.upperBound))]"
        case .numberHalfOpen(let r): return "a number in [\(format(r.lowerBound)), \(format(r.upperBound)))"
        case .bool: return "true or false"
        case .choice(let names): return "one of " + names.map { "\"\($0)\"" }.joined(separator: ", ")
        case .positiveInts(let n): return "a positive integer or a list of \(n) positive integers"
        case .nonNegativeInts(let n): return "a non-negative integer or a list of \(n) non-negative integers"
        case .component(let noun):
            return "a \(noun) object like {\"type\": \"\(Registries.kinds(noun).last?.type ?? "")\"}, or a \(noun) name"
        }
    }
}

/// A bound as a person writes it: "0", "1000000", "0.01", "1e-12".
func format(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return x.description
}

/// One option a component accepts.
public struct OptionSpec: Sendable {
    public var name: String
    public var kind: OptionKind
    /// Nil when the option is required.
    public var defaultValue: SpecValue?
    public var doc: String

    public init(_ name: String, _ kind: OptionKind, default defaultValue: SpecValue? = nil, doc: String = "") {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.doc = doc
    }

    public var isRequired: Bool { defaultValue == nil }
}

/// A type a spec can name ("linear", "adam", ...) and the options it takes. The parser fills
/// in defaults, so builders can read every declared option without optionals failing.
public struct ComponentKind: Sendable {
    public var type: String
    public var options: [OptionSpec]
    public var doc: String

    public init(_ type: String, options: [OptionSpec] = [], doc: String = "") {
        self.type = type
        self.options = options
        self.doc = doc
    }
}

extension ComponentKind {
    /// A spec of this kind with `options` and the defaults of every other option, as the
    /// parser would give it (for Swift callers and tests that build components directly).
    public func spec(_ options: [String: SpecValue] = [:], path: String = "") -> ComponentSpec {
        var filled = options
        for option in self.options where filled[option.name] == nil { filled[option.name] = option.defaultValue }
        return ComponentSpec(type: type, options: filled, path: path)
    }
}

/// Edit distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

/// The candidate nearest to `word`, when it is near enough to be a plausible typo.
public func nearest(_ word: String, in candidates: [String]) -> String? {
    let lowered = word.lowercased()
    let scored = candidates.map { ($0, editDistance(lowered, $0)) }
    guard let (name, d) = scored.min(by: { $0.1 < $1.1 }), d <= Swift.max(2, name.count / 3) else { return nil }
    return name
}
