import CJSONC
import Glibc

/// Reads a model spec (format_version 1) from JSON and validates every value.
///
/// json-c does the tokenizing; everything else is checked here against the registries, so a
/// new layer, loss or optimizer needs no parser change: its `ComponentKind` says which options
/// it takes. Every message starts with the source ("mnist.json" or "<string>") and names the
/// culprit by its JSON path: `layers[2].units: expected a positive integer, got -3`.
/// Sizes between consecutive layers are left to `Model(spec:)`.
public enum SpecParser {
    /// Largest spec accepted, in bytes: json-c takes an `int` length, and real specs are a few KiB.
    public static let maxBytes = 16 << 20

    /// Parses a spec from JSON text; `source` names it in messages.
    public static func parse(json: String, source: String = "<string>") throws(DLError) -> ModelSpec {
        try parse(bytes: Array(json.utf8), source: source)
    }

    /// Parses the spec file at `path`; a missing or unreadable file is a `.io` error.
    public static func parse(file path: String) throws(DLError) -> ModelSpec {
        try parse(bytes: readFile(path), source: path)
    }

    static func parse(bytes: [UInt8], source: String) throws(DLError) -> ModelSpec {
        let root = try tokenize(bytes, source)
        defer { json_object_put(root) }     // the one owned reference; every other pointer is borrowed from it
        var spec = try SpecReader(source: source).model(root)
        spec.json = String(decoding: bytes, as: UTF8.self)
        spec.source = source
        return spec
    }

    /// The whole file, or `.io` naming the path and the system's reason.
    static func readFile(_ path: String) throws(DLError) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw DLError(.io, "\(path): cannot open the spec file: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            bytes += chunk[0..<n]
            if bytes.count > maxBytes {
                throw DLError(.spec, "\(path): the file is larger than a spec may be (\(maxBytes) bytes)")
            }
            if n < chunk.count { break }
        }
        if ferror(file) != 0 {
            throw DLError(.io, "\(path): cannot read the spec file: \(String(cString: strerror(errno)))")
        }
        return bytes
    }

    /// The json-c tree of `bytes`, owned by the caller (release it with `json_object_put`).
    /// Syntax errors name the line and column: `mnist.json:3:14: JSON syntax error: ...`.
    static func tokenize(_ bytes: [UInt8], _ source: String, requireObject: Bool = true) throws(DLError) -> OpaquePointer {
        guard bytes.count <= maxBytes else {
            throw DLError(.spec, "\(source): the text is larger than a spec may be (\(maxBytes) bytes)")
        }
        if bytes.allSatisfy(isSpace) {
            throw DLError(.spec, "\(source): \(bytes.isEmpty ? "the spec is empty" : "the spec holds only whitespace"); expected a JSON object")
        }
        func syntaxError(_ what: String, at offset: Int) -> DLError {
            let (line, column) = location(bytes, offset)
            return DLError(.spec, "\(source):\(line):\(column): JSON syntax error: \(what)")
        }
        guard let tokener = json_tokener_new() else { throw DLError(.noMemory, "\(source): json-c could not allocate a tokener") }
        defer { json_tokener_free(tokener) }
        // Strict rejects trailing commas and other leniencies; trailing text is checked below
        // so that it gets a message of its own.
        json_tokener_set_flags(tokener, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS | JSON_TOKENER_VALIDATE_UTF8)
        let text = bytes + [0]      // json-c needs the terminator counted to finish a bare number
        let root = text.withUnsafeBytes {
            json_tokener_parse_ex(tokener, $0.baseAddress?.assumingMemoryBound(to: CChar.self), Int32($0.count))
        }
        let status = json_tokener_get_error(tokener)
        let end = json_tokener_get_parse_end(tokener)
        guard status == json_tokener_success else {
            json_object_put(root)
            let description = json_tokener_error_desc(status).map { String(cString: $0) } ?? "error \(status.rawValue)"
            throw syntaxError(description, at: end)
        }
        if let garbage = bytes.indices.dropFirst(end).first(where: { !isSpace(bytes[$0]) }) {
            json_object_put(root)
            throw syntaxError("unexpected text after the top-level value", at: garbage)
        }
        guard let root, !requireObject || json_object_get_type(root) == json_type_object else {
            defer { json_object_put(root) }
            throw DLError(.spec, "\(source): expected a JSON object at the top level, got \(SpecReader.describe(root))")
        }
        return root
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// 1-based line and column of a byte offset; columns count characters, not UTF-8 bytes.
    static func location(_ bytes: [UInt8], _ offset: Int) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for byte in bytes.prefix(offset) {
            if byte == 0x0A {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }
}

/// A json-c value borrowed from the tree's root; nil is JSON null.
typealias JSONValue = OpaquePointer?

/// Walks a parsed spec and builds a `ModelSpec`, throwing at the first invalid value.
struct SpecReader {
    let source: String

    /// Settings at the top level that are plain options; the structural keys are read by hand.
    static let settings = ComponentKind("spec", options: [
        OptionSpec("format_version", .positiveInt, default: .int(ModelSpec.formatVersion)),
        OptionSpec("init", .choice(Initializer.allCases.map(\.rawValue)), default: .string(Initializer.heNormal.rawValue)),
        OptionSpec("seed", .nonNegativeInt, default: .int(0)),
        OptionSpec("dtype", .choice([DType.float32.rawValue, DType.float64.rawValue]), default: .string(DType.float32.rawValue)),
        OptionSpec("memory_budget", .positiveInt, default: .int(ModelSpec.defaultMemoryBudget),
                   doc: "MiB of activations and workspaces one forward pass may hold: a model needing more for one sample is refused when built, and predict and evaluate work in chunks of samples that fit"),
    ])
    static let structuralKeys = ["name", "input", "input_size", "input_shape", "layers", "loss", "optimizer", "preprocessing"]
    static let inputKeys = ["input", "input_size", "input_shape"]
    static let inputExpectation = #"{"size": N} or {"shape": [C, H, W]}"#
    static let shapeExpectation = "a list of 1 to 3 positive integers"
    static let layersExpectation = "a non-empty array of layer objects"

    func model(_ root: OpaquePointer) throws(DLError) -> ModelSpec {
        let members = Self.members(root)
        // A newer file may use keys this version does not know, so its version is checked first.
        if let version = Self.member("format_version", members), json_object_get_type(version) == json_type_int,
           json_object_get_int64(version) > Int64(ModelSpec.formatVersion) {
            throw error("", "format_version \(Self.describe(version)) is newer than this library supports (\(ModelSpec.formatVersion))")
        }
        let settings = ComponentSpec(type: "spec", options: try options(members, of: Self.settings, path: "", otherKeys: Self.structuralKeys))
        let required = { (key: String, expectation: String) throws(DLError) -> JSONValue in
            guard let value = Self.member(key, members) else { throw error(key, "missing required key (\(expectation))") }
            return value
        }

        let inputShape = try input(members)
        let layersValue = try required("layers", Self.layersExpectation)
        guard json_object_get_type(layersValue) == json_type_array, json_object_array_length(layersValue) > 0 else {
            throw error("layers", "expected \(Self.layersExpectation), got \(Self.describe(layersValue))")
        }
        var layers: [ComponentSpec] = []
        for (i, layer) in Self.elements(layersValue).enumerated() {
            layers.append(try component(layer, path: "layers[\(i)]", noun: "layer", kinds: LayerRegistry.kinds))
        }
        let lossValue = try required("loss", #"a loss object like {"type": "cross_entropy"}, or a loss name"#)
        let loss = try componentOrName(lossValue, path: "loss", noun: "loss", kinds: LossRegistry.kinds)
        let optimizerValue = try required("optimizer", #"an optimizer object like {"type": "sgd", "lr": 0.01}"#)
        let optimizer = try component(optimizerValue, path: "optimizer", noun: "optimizer", kinds: OptimizerRegistry.kinds)

        var spec = ModelSpec(inputShape: inputShape, layers: layers, loss: loss, optimizer: optimizer)
        if let name = Self.member("name", members) {
            guard let text = Self.string(name) else { throw error("name", "expected a string, got \(Self.describe(name))") }
            spec.name = text
        }
        if let value = Self.member("preprocessing", members) {
            guard json_object_get_type(value) == json_type_object else {
                throw error("preprocessing", "expected an object like {\"scale\": 0.00392156862745098, \"mean\": 0.1307, \"std\": 0.3081}, got \(Self.describe(value))")
            }
            let p = ComponentSpec(type: "preprocessing", options: try options(Self.members(value), of: Preprocessing.kind, path: "preprocessing"))
            spec.preprocessing = Preprocessing(scale: try p.double("scale"), mean: try p.double("mean"), std: try p.double("std"))
            do throws(DLError) { try spec.preprocessing.validate() } catch {
                throw DLError(.spec, "\(source): \(error.message)")   // never, while the ranges above are the rules
            }
        }
        spec.formatVersion = try settings.int("format_version")
        spec.seed = UInt64(try settings.int("seed"))        // validated as non-negative
        spec.initializer = try settings.choice("init", Initializer.self)
        spec.dtype = try settings.choice("dtype", DType.self)
        spec.memoryBudget = try settings.int("memory_budget")
        return spec
    }

    /// The shape of one sample, from exactly one of "input", "input_size" and "input_shape".
    func input(_ members: [Member]) throws(DLError) -> [Int] {
        let given = members.filter { Self.inputKeys.contains($0.key) }
        guard let (key, value) = given.first else {
            throw error("input", "missing required key (\(Self.inputExpectation))")
        }
        guard given.count == 1 else {
            throw error("", "the input is given twice, as \"\(key)\" and \"\(given[1].key)\"; keep one")
        }
        switch key {
        case "input_size": return [try size(value, path: key)]
        case "input_shape": return try shape(value, path: key)
        default:
            guard json_object_get_type(value) == json_type_object else {
                throw error(key, "expected \(Self.inputExpectation), got \(Self.describe(value))")
            }
            let fields = Self.members(value)
            try rejectUnknownKeys(fields, allowed: ["size", "shape"], path: key, owner: "input")
            switch (Self.member("size", fields), Self.member("shape", fields)) {
            case (let size?, nil): return [try self.size(size, path: "input.size")]
            case (nil, let shape?): return try self.shape(shape, path: "input.shape")
            case (.some, .some): throw error(key, "give either \"size\" or \"shape\", not both")
            case (nil, nil): throw error(key, "expected \(Self.inputExpectation), got \(Self.describe(value))")
            }
        }
    }

    func size(_ value: JSONValue, path: String) throws(DLError) -> Int {
        guard let n = try integer(value, atLeast: 1, limit: Limits.maxTensorElements, path: path) else {
            throw error(path, "expected \(OptionKind.positiveInt.expectation), got \(Self.describe(value))")
        }
        return n
    }

    func shape(_ value: JSONValue, path: String) throws(DLError) -> [Int] {
        let dims = Self.elements(value)
        guard json_object_get_type(value) == json_type_array, (1...3).contains(dims.count) else {
            throw error(path, "expected \(Self.shapeExpectation), got \(Self.describe(value))")
        }
        var shape: [Int] = []
        for dim in dims {
            guard let n = try integer(dim, atLeast: 1, limit: Limits.maxTensorElements, path: path) else {
                throw error(path, "expected \(Self.shapeExpectation), got \(Self.describe(value))")
            }
            shape.append(n)
        }
        return shape
    }

    // MARK: - Components, driven by the registries

    /// A layer, loss or optimizer object: its "type" looked up in `kinds`, then its options.
    func component(_ value: JSONValue, path: String, noun: String, kinds: [ComponentKind]) throws(DLError) -> ComponentSpec {
        guard json_object_get_type(value) == json_type_object else {
            throw error(path, "expected a \(noun) object with a \"type\", got \(Self.describe(value))")
        }
        let members = Self.members(value)
        guard let typeValue = Self.member("type", members) else {
            // A misspelt "type" deserves the suggestion more than the complaint that it is missing.
            if let typo = members.first(where: { nearest($0.key, in: ["type"]) != nil }) {
                throw error(path, "unknown key \"\(typo.key)\"; did you mean \"type\"?")
            }
            throw error(path + ".type", "missing required key (one of \(Self.quoted(kinds.map(\.type))))")
        }
        guard let type = Self.string(typeValue) else {
            throw error(path + ".type", "expected a \(noun) type name, got \(Self.describe(typeValue))")
        }
        let kind = try self.kind(named: type, path: path + ".type", noun: noun, kinds: kinds)
        let options = try self.options(members, of: kind, path: path, otherKeys: ["type"])
        return ComponentSpec(type: type, options: options, path: path)
    }

    /// A component object, or just its type's name for its defaults (`"loss": "mse"`).
    func componentOrName(_ value: JSONValue, path: String, noun: String, kinds: [ComponentKind]) throws(DLError) -> ComponentSpec {
        guard let name = Self.string(value) else { return try component(value, path: path, noun: noun, kinds: kinds) }
        let kind = try self.kind(named: name, path: path, noun: noun, kinds: kinds)
        return ComponentSpec(type: name, options: try options([], of: kind, path: path), path: path)
    }

    func kind(named type: String, path: String, noun: String, kinds: [ComponentKind]) throws(DLError) -> ComponentKind {
        if let kind = kinds.first(where: { $0.type == type }) { return kind }
        let names = kinds.map(\.type)
        let hint = nearest(type, in: names).map { "did you mean \"\($0)\"?" } ?? "the \(noun) types are \(Self.quoted(names))"
        throw error(path, "unknown \(noun) type \"\(type)\"; \(hint)")
    }

    /// Validates `members` against the options `kind` declares (plus `otherKeys`, read by the
    /// caller) and fills in the defaults of options not given, so every declared option is present.
    func options(_ members: [Member], of kind: ComponentKind, path: String, otherKeys: [String] = []) throws(DLError) -> [String: SpecValue] {
        try rejectUnknownKeys(members, allowed: otherKeys + kind.options.map(\.name), path: path, owner: kind.type)
        var options: [String: SpecValue] = [:]
        for option in kind.options {
            let optionPath = path.isEmpty ? option.name : "\(path).\(option.name)"
            if let value = Self.member(option.name, members) {
                options[option.name] = try self.value(value, option.kind, path: optionPath)
            } else if let value = option.defaultValue {
                options[option.name] = value
            } else {
                throw error(optionPath, "missing required option (\(option.kind.expectation))")
            }
        }
        return options
    }

    func rejectUnknownKeys(_ members: [Member], allowed: [String], path: String, owner: String) throws(DLError) {
        for member in members where !allowed.contains(member.key) {
            let hint: String
            if let near = nearest(member.key, in: allowed) {
                hint = "did you mean \"\(near)\"?"
            } else if allowed == ["type"] {
                hint = "\(owner) takes no options"
            } else {
                hint = "the keys here are \(Self.quoted(allowed))"
            }
            throw error(path, "unknown key \"\(member.key)\"; \(hint)")
        }
    }

    /// One option's value checked against its kind.
    func value(_ value: JSONValue, _ kind: OptionKind, path: String) throws(DLError) -> SpecValue {
        switch kind {
        case .positiveInt:
            if let n = try integer(value, atLeast: 1, limit: Limits.maxTensorElements, path: path) { return .int(n) }
        case .nonNegativeInt:
            if let n = try integer(value, atLeast: 0, limit: Int.max, path: path) { return .int(n) }
        case .number(let range):
            if let x = Self.number(value), range.contains(x) { return .double(x) }
        case .numberHalfOpen(let range):
            if let x = Self.number(value), range.contains(x) { return .double(x) }
        case .bool:
            if json_object_get_type(value) == json_type_boolean { return .bool(json_object_get_boolean(value) != 0) }
        case .choice(let names):
            if let name = Self.string(value), names.contains(name) { return .string(name) }
        case .component(let noun):
            return .component(try componentOrName(value, path: path, noun: noun, kinds: Registries.kinds(noun)))
        case .positiveInts(let count), .nonNegativeInts(let count):
            // Kernel sizes, strides and padding are sizes too, so they share the tensor limit.
            let least = if case .positiveInts = kind { 1 } else { 0 }
            if let n = try integer(value, atLeast: least, limit: Limits.maxTensorElements, path: path) { return .int(n) }
            let items = Self.elements(value)
            if json_object_get_type(value) == json_type_array, items.count == count {
                var ints: [Int] = []
                for item in items {
                    guard let n = try integer(item, atLeast: least, limit: Limits.maxTensorElements, path: path) else { break }
                    ints.append(n)
                }
                if ints.count == count { return .ints(ints) }
            }
        }
        throw error(path, "expected \(kind.expectation), got \(Self.describe(value))")
    }

    /// `value` as an integer of at least `least`, or nil when it is not one (a double such as
    /// 3.0 is not); throws when it is above `limit`.
    func integer(_ value: JSONValue, atLeast least: Int, limit: Int, path: String) throws(DLError) -> Int? {
        guard json_object_get_type(value) == json_type_int else { return nil }
        let n = json_object_get_int64(value)
        guard n >= Int64(least) else { return nil }
        // json-c saturates integers beyond Int64 at Int64.max; the unsigned reading tells them apart.
        let fits = n < Int64.max || json_object_get_uint64(value) == UInt64(Int64.max)
        guard fits, let result = Int(exactly: n), result <= limit else {
            let shown = fits ? Self.describe(value) : "an integer beyond 64 bits"
            throw error(path, "\(shown) is too large (limit \(limit))")
        }
        return result
    }

    func error(_ path: String, _ message: String) -> DLError {
        DLError(.spec, path.isEmpty ? "\(source): \(message)" : "\(source): \(path): \(message)")
    }

    // MARK: - json-c access

    typealias Member = (key: String, value: JSONValue)

    /// The key-value pairs of an object, in file order.
    static func members(_ object: JSONValue) -> [Member] {
        guard json_object_get_type(object) == json_type_object else { return [] }
        var result: [Member] = []
        var it = json_object_iter_begin(object)
        var end = json_object_iter_end(object)
        while json_object_iter_equal(&it, &end) == 0 {
            let key = json_object_iter_peek_name(&it).map { String(cString: $0) } ?? ""
            result.append((key, json_object_iter_peek_value(&it)))
            json_object_iter_next(&it)
        }
        return result
    }

    /// The value of `key`; `.some(nil)` when the key holds null, nil when it is absent.
    static func member(_ key: String, _ members: [Member]) -> JSONValue? {
        members.first { $0.key == key }.map(\.value)
    }

    static func elements(_ array: JSONValue) -> [JSONValue] {
        guard json_object_get_type(array) == json_type_array else { return [] }
        return (0..<json_object_array_length(array)).map { json_object_array_get_idx(array, $0) }
    }

    static func string(_ value: JSONValue) -> String? {
        guard json_object_get_type(value) == json_type_string, let chars = json_object_get_string(value) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: chars, count: Int(json_object_get_string_len(value)))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A finite number; json-c reads NaN, Infinity and 1e999, which are refused here.
    static func number(_ value: JSONValue) -> Double? {
        let type = json_object_get_type(value)
        guard type == json_type_int || type == json_type_double else { return nil }
        let x = json_object_get_double(value)
        return x.isFinite ? x : nil
    }

    /// A value as compact JSON for messages, cut to about 40 characters.
    static func describe(_ value: JSONValue) -> String {
        let flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE
        let text = json_object_to_json_string_ext(value, flags).map { String(cString: $0) } ?? "null"
        return text.count <= 40 ? text : text.prefix(37) + "..."
    }

    static func quoted(_ names: [String]) -> String {
        names.map { "\"\($0)\"" }.joined(separator: ", ")
    }
}
