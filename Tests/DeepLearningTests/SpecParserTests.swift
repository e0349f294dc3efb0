import CJSONC
import Glibc
import Testing
@testable import DeepLearning

/// The directory holding this file, from `#filePath` (no Foundation).
private func directory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

private let testsDirectory = directory(of: String(#filePath))
private let badSpecsDirectory = testsDirectory + "/BadSpecs"
private let specsDirectory = directory(of: directory(of: testsDirectory)) + "/specs"

/// Names of the `.json` files in `path`, sorted.
private func jsonFiles(in path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name.hasSuffix(".json") { names.append(name) }
    }
    return names.sorted()
}

/// The error a parse throws, or nil when it succeeds.
private func parseError(_ parse: () throws(DLError) -> ModelSpec) -> DLError? {
    do {
        _ = try parse()
        return nil
    } catch {
        return error
    }
}

/// Each malformed spec in BadSpecs/ and a part of the message it must produce.
private let badSpecs: [(file: String, message: String)] = [
    // JSON syntax, with line and column
    ("01-missing-comma.json", "01-missing-comma.json:3:3: JSON syntax error: object value separator ',' expected"),
    ("02-trailing-comma.json", "02-trailing-comma.json:6:1: JSON syntax error: unexpected character"),
    ("03-unclosed-brace.json", "03-unclosed-brace.json:6:1: JSON syntax error: unexpected end of data"),
    ("04-bad-literal.json", "04-bad-literal.json:4:47: JSON syntax error: boolean expected"),
    ("05-empty.json", "05-empty.json: the spec is empty; expected a JSON object"),
    ("06-whitespace-only.json", "06-whitespace-only.json: the spec holds only whitespace; expected a JSON object"),
    ("07-trailing-garbage.json", "07-trailing-garbage.json:9:1: JSON syntax error: unexpected text after the top-level value"),
    ("47-deep-nesting.json", "47-deep-nesting.json:2:42: JSON syntax error: nesting too deep"),
    ("57-invalid-utf8.json", "57-invalid-utf8.json:8:16: JSON syntax error: invalid utf-8 string"),
    // The top level
    ("08-top-level-array.json", #"08-top-level-array.json: expected a JSON object at the top level, got [{"type":"linear","units":3}]"#),
    ("56-top-level-null.json", "56-top-level-null.json: expected a JSON object at the top level, got null"),
    ("15-unknown-top-level-key.json", #"15-unknown-top-level-key.json: unknown key "sead"; did you mean "seed"?"#),
    ("23-missing-input.json", #"input: missing required key ({"size": N} or {"shape": [C, H, W]})"#),
    ("24-missing-layers.json", "layers: missing required key (a non-empty array of layer objects)"),
    ("25-missing-loss.json", #"loss: missing required key (a loss object like {"type": "cross_entropy"}, or a loss name)"#),
    ("26-missing-optimizer.json", #"optimizer: missing required key (an optimizer object like {"type": "sgd", "lr": 0.01})"#),
    ("13-layers-object.json", "layers: expected a non-empty array of layer objects, got {}"),
    ("41-empty-layers.json", "layers: expected a non-empty array of layer objects, got []"),
    ("34-negative-seed.json", "seed: expected a non-negative integer, got -1"),
    ("35-seed-beyond-64-bits.json", "seed: an integer beyond 64 bits is too large (limit 9223372036854775807)"),
    ("36-dtype-float16.json", #"dtype: expected one of "float32", "float64", got "float16""#),
    ("37-init-glorot.json", #"init: expected one of "he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "zeros", got "glorot""#),
    ("38-format-version-99.json", "38-format-version-99.json: format_version 99 is newer than this library supports (1)"),
    ("52-name-not-string.json", "name: expected a string, got 42"),
    // The input
    ("42-input-size-and-shape.json", #"input: give either "size" or "shape", not both"#),
    ("43-input-shape-zero-dim.json", "input.shape: expected a list of 1 to 3 positive integers, got [1,0,28]"),
    ("44-input-given-twice.json", #"44-input-given-twice.json: the input is given twice, as "input" and "input_size"; keep one"#),
    ("53-input-shape-four-dims.json", "input_shape: expected a list of 1 to 3 positive integers, got [1,1,28,28]"),
    ("54-input-unknown-key.json", #"input: unknown key "sise"; did you mean "size"?"#),
    // Layers
    ("14-layer-not-object.json", #"layers[1]: expected a layer object with a "type", got "relu""#),
    ("29-missing-type.json", #"layers[0].type: missing required key (one of "linear", "relu", "#),
    ("30-misspelt-type-key.json", #"layers[0]: unknown key "typ"; did you mean "type"?"#),
    ("55-layer-type-not-string.json", "layers[0].type: expected a layer type name, got 7"),
    ("18-unknown-layer-type.json", #"layers[2].type: unknown layer type "lienar"; did you mean "linear"?"#),
    ("19-unknown-layer-type-far.json", #"layers[0].type: unknown layer type "transmogrifier"; the layer types are "linear", "relu", "#),
    ("16-unknown-layer-key.json", #"layers[0]: unknown key "unit"; did you mean "units"?"#),
    ("48-option-on-optionless-layer.json", #"layers[1]: unknown key "alpha"; relu takes no options"#),
    ("27-missing-units.json", "layers[0].units: missing required option (a positive integer)"),
    ("09-units-string.json", #"layers[0].units: expected a positive integer, got "abc""#),
    ("10-units-fraction.json", "layers[0].units: expected a positive integer, got 1.5"),
    ("11-units-integral-double.json", "layers[0].units: expected a positive integer, got 3.0"),
    ("50-units-null.json", "layers[0].units: expected a positive integer, got null"),
    ("31-units-zero.json", "layers[0].units: expected a positive integer, got 0"),
    ("32-units-negative.json", "layers[2].units: expected a positive integer, got -3"),
    ("33-units-huge.json", "layers[0].units: 99999999999 is too large (limit 2147483647)"),
    ("51-in-features-zero.json", "layers[0].in_features: expected a positive integer, got 0"),
    ("49-bias-string.json", #"layers[0].bias: expected true or false, got "yes""#),
    ("39-leaky-relu-alpha-2.json", "layers[1].alpha: expected a number in [0, 1], got 2"),
    // Loss and optimizer
    ("20-unknown-loss-type.json", #"loss.type: unknown loss type "cross_entropie"; did you mean "cross_entropy"?"#),
    ("21-unknown-loss-shorthand.json", #"loss: unknown loss type "crossentropy"; did you mean "cross_entropy"?"#),
    ("22-unknown-optimizer-type.json", #"optimizer.type: unknown optimizer type "nadam"; did you mean "adam"?"#),
    ("17-unknown-optimizer-key.json", #"optimizer: unknown key "momentun"; did you mean "momentum"?"#),
    ("58-unknown-schedule-type.json", #"optimizer.schedule.type: unknown schedule type "cosin"; did you mean "cosine"?"#),
    ("59-cosine-missing-t-max.json", "optimizer.schedule.t_max: missing required option (a positive integer)"),
    ("60-label-smoothing-above-1.json", "loss.label_smoothing: expected a number in [0, 1], got 1.5"),
    ("61-schedule-interval-batch.json", #"optimizer.schedule.interval: expected one of "epoch", "step", got "batch""#),
    ("28-missing-lr.json", "optimizer.lr: missing required option (a number in [0, 1000000])"),
    ("12-lr-string.json", #"optimizer.lr: expected a number in [0, 1000000], got "fast""#),
    ("45-nan-literal.json", "optimizer.lr: expected a number in [0, 1000000], got NaN"),
    ("46-infinite-number.json", "optimizer.lr: expected a number in [0, 1000000], got 1e999"),
    ("40-momentum-1.5.json", "optimizer.momentum: expected a number in [0, 1), got 1.5"),
]

// MARK: - Malformed specs

@Test(arguments: badSpecs)
func badSpecIsRejected(file: String, message: String) {
    let path = badSpecsDirectory + "/" + file
    let error = parseError { () throws(DLError) in try SpecParser.parse(file: path) }
    #expect(error?.kind == .spec)
    #expect(error?.message.hasPrefix(path + ":") == true, "the message names the file first")
    #expect(error?.message.contains(message) == true, "\(error?.message ?? "parsed without error")")
}

@Test func badSpecCorpusMatchesTable() {
    #expect(jsonFiles(in: badSpecsDirectory) == badSpecs.map(\.file).sorted())
    #expect(badSpecs.count >= 35)
}

@Test func badSpecMessagesAreDistinct() {
    var seen: Set<String> = []
    for (file, expected) in badSpecs {
        let path = badSpecsDirectory + "/" + file
        let message = parseError { () throws(DLError) in try SpecParser.parse(file: path) }?.message ?? ""
        let withoutSource = String(message.dropFirst(path.count))
        #expect(seen.insert(withoutSource).inserted, "\(file) repeats the message \(message)")
        #expect(badSpecs.filter { $0.message == expected }.count == 1, "\(file)'s expectation is shared")
    }
}

@Test func missingFileIsAnIOError() {
    let error = parseError { () throws(DLError) in try SpecParser.parse(file: "/nonexistent/mnist.json") }
    #expect(error?.kind == .io)
    #expect(error?.message == "/nonexistent/mnist.json: cannot open the spec file: No such file or directory")
}

@Test func directoryIsAnIOError() {
    let error = parseError { () throws(DLError) in try SpecParser.parse(file: specsDirectory) }
    #expect(error?.kind == .io)
    #expect(error?.message == specsDirectory + ": cannot read the spec file: Is a directory")
}

@Test func stringSourceNamesItself() {
    let error = parseError { () throws(DLError) in try SpecParser.parse(json: "{\n  \"input\": 4,\n  oops\n}") }
    #expect(error?.message == "<string>:3:3: JSON syntax error: quoted object property name expected")
    let named = parseError { () throws(DLError) in try SpecParser.parse(json: "[]", source: "inline") }
    #expect(named?.message == "inline: expected a JSON object at the top level, got []")
}

/// Every prefix of a spec and every one-byte change of it parses or throws `.spec`; none traps.
@Test func damagedSpecsNeverTrap() throws {
    let text = try SpecParser.readFile(specsDirectory + "/mnist_deep.json")
    var variants = (0..<text.count).map { Array(text[..<$0]) }
    for i in text.indices {
        for byte in Array(#"{}[]",:0-9.e"x\ "#.utf8) + [0, 0xFF] {
            var changed = text
            changed[i] = byte
            variants.append(changed)
        }
    }
    for bytes in variants {
        do {
            _ = try SpecParser.parse(bytes: bytes, source: "fuzz")
        } catch {
            #expect(error.kind == .spec && error.message.hasPrefix("fuzz"), "\(error.message)")
        }
    }
}

// MARK: - Valid specs

private let minimal = #""layers": [{"type": "linear", "units": 3}], "loss": "mse", "optimizer": {"type": "sgd", "lr": 1}"#

@Test func everyShippedSpecParses() throws {
    let files = jsonFiles(in: specsDirectory).filter { $0 != "schema.json" }
    #expect(files.count >= 4)
    for file in files {
        let path = specsDirectory + "/" + file
        let spec = try SpecParser.parse(file: path)
        #expect(spec.source == path)
        #expect(!spec.json.isEmpty)
        #expect(!spec.layers.isEmpty)
    }
}

@Test func mnistMLPHasItsDefaultsFilledIn() throws {
    let spec = try SpecParser.parse(file: specsDirectory + "/mnist_mlp.json")
    #expect(spec.name == "mnist_mlp")
    #expect(spec.inputShape == [784])
    #expect(spec.layers.map(\.type) == ["linear", "relu", "linear"])
    #expect(spec.layers.map(\.path) == ["layers[0]", "layers[1]", "layers[2]"])
    let first = spec.layers[0]
    #expect(first.options == ["units": .int(128), "in_features": .int(0), "bias": .bool(true), "init": .string("")])
    #expect(spec.layers[1].options.isEmpty)
    #expect(spec.loss.type == "cross_entropy")
    #expect(spec.loss.path == "loss")
    #expect(spec.optimizer.type == "sgd")
    #expect(spec.optimizer.path == "optimizer")
    #expect(spec.optimizer.options == ["lr": .double(0.01), "clip_norm": .double(0), "schedule": .component(ComponentSpec(type: "constant")), "lr_decay": .double(1), "weight_decay": .double(0),
                                       "momentum": .double(0), "nesterov": .bool(false)])
    #expect(spec.initializer == .heNormal)
    #expect(spec.seed == 0)
    #expect(spec.dtype == .float32)
    #expect(spec.formatVersion == 1)
}

@Test func regressionUsesHuberAndAdam() throws {
    let spec = try SpecParser.parse(file: specsDirectory + "/regression.json")
    #expect(spec.loss.type == "huber")
    #expect(try spec.loss.double("delta") == 1.0)
    #expect(spec.optimizer.options == ["lr": .double(0.01), "clip_norm": .double(0), "schedule": .component(ComponentSpec(type: "constant")), "lr_decay": .double(1), "weight_decay": .double(0),
                                       "beta1": .double(0.9), "beta2": .double(0.999), "eps": .double(1e-8)])
}

@Test func defaultsOfTheTopLevel() throws {
    let spec = try SpecParser.parse(json: #"{"input_size": 4, "# + minimal + "}")
    #expect(spec.name == "")
    #expect(spec.initializer == .heNormal)
    #expect(spec.seed == 0)
    #expect(spec.dtype == .float32)
    #expect(spec.source == "<string>")
    #expect(spec.json == #"{"input_size": 4, "# + minimal + "}")
    #expect(spec.optimizer.options["lr"] == .double(1), "an integer is accepted as a number")
}

@Test func lossShorthandEqualsTheObject() throws {
    let input = #"{"input_size": 4, "layers": [{"type": "linear", "units": 2}], "optimizer": {"type": "sgd", "lr": 0.1}, "#
    let short = try SpecParser.parse(json: input + #""loss": "huber"}"#)
    let long = try SpecParser.parse(json: input + #""loss": {"type": "huber"}}"#)
    #expect(short.loss.type == long.loss.type)
    #expect(short.loss.options == long.loss.options)
    #expect(short.loss.options == ["delta": .double(1.0)])
}

@Test(arguments: [
    (#""input": {"size": 5}"#, [5]),
    (#""input": {"shape": [1, 28, 28]}"#, [1, 28, 28]),
    (#""input_size": 7"#, [7]),
    (#""input_shape": [3, 32, 32]"#, [3, 32, 32]),
    (#""input_shape": [10]"#, [10]),
])
func inputShapeOrSize(input: String, shape: [Int]) throws {
    let spec = try SpecParser.parse(json: "{" + input + ", " + minimal + "}")
    #expect(spec.inputShape == shape)
}

@Test func topLevelSettings() throws {
    let text = #"{"format_version": 1, "name": "n", "input_size": 1, "dtype": "float64", "init": "zeros", "seed": 9223372036854775807, "# + minimal + "}"
    let spec = try SpecParser.parse(json: text)
    #expect(spec.name == "n")
    #expect(spec.dtype == .float64)
    #expect(spec.initializer == .zeros)
    #expect(spec.seed == UInt64(Int64.max))
}

/// specs/schema.json and the option tables of specs/README.md are generated from the
/// registries (`dl spec schema`, `dl spec docs`); the committed files must be what they write.
@Test func generatedFilesAreUpToDate() throws {
    let schema = String(decoding: try SpecParser.readFile(specsDirectory + "/schema.json"), as: UTF8.self)
    #expect(schema == SpecDocs.schema(), "specs/schema.json is stale: run `swift run dl spec schema --output specs/schema.json`")
    let readme = String(decoding: try SpecParser.readFile(specsDirectory + "/README.md"), as: UTF8.self)
    #expect(readme == (try SpecDocs.readme(updating: readme)), "specs/README.md's tables are stale: run `swift run dl spec docs`")
}

/// The generated schema declares each registry's types, options and required options.
@Test func schemaDeclaresWhatTheRegistriesDo() throws {
    let path = specsDirectory + "/schema.json"
    let root = try SpecParser.tokenize(try SpecParser.readFile(path), path)
    defer { json_object_put(root) }
    func get(_ value: JSONValue, _ keys: String...) -> JSONValue {
        keys.reduce(value) { SpecReader.member($1, SpecReader.members($0)) ?? nil }
    }
    func strings(_ value: JSONValue) -> [String] { SpecReader.elements(value).compactMap(SpecReader.string) }

    let registries = [("layer", LayerRegistry.kinds), ("loss", LossRegistry.kinds), ("optimizer", OptimizerRegistry.kinds)]
    for (name, kinds) in registries {
        var declared: [String: (options: Set<String>, required: Set<String>)] = [:]
        for entry in SpecReader.elements(get(root, "$defs", name, "oneOf")) where get(entry, "enum") == nil {
            let type = SpecReader.string(get(entry, "properties", "type", "const")) ?? ""
            let options = Set(SpecReader.members(get(entry, "properties")).map(\.key)).subtracting(["type"])
            declared[type] = (options, Set(strings(get(entry, "required"))).subtracting(["type"]))
        }
        #expect(Set(declared.keys) == Set(kinds.map(\.type)), "schema.json's \(name) types")
        for kind in kinds {
            #expect(declared[kind.type]?.options == Set(kind.options.map(\.name)), "schema.json's \(kind.type) options")
            #expect(declared[kind.type]?.required == Set(kind.options.filter(\.isRequired).map(\.name)))
        }
    }
    let lossNames = SpecReader.elements(get(root, "$defs", "loss", "oneOf")).first ?? nil
    #expect(strings(get(lossNames, "enum")) == LossRegistry.kinds.map(\.type), "the loss shorthand names")
    #expect(strings(get(root, "properties", "init", "enum")) == Initializer.allCases.map(\.rawValue))
}

// MARK: - The generic option validator, for kinds no layer uses yet

/// Validates `json` as the value of an option of `kind`, through the parser's own path.
private func validate(_ json: String, _ kind: OptionKind) -> Result<SpecValue, DLError> {
    do throws(DLError) {
        let root = try SpecParser.tokenize(Array(#"{"k": "#.utf8) + Array(json.utf8) + [UInt8(ascii: "}")], "t")
        defer { json_object_put(root) }
        let reader = SpecReader(source: "t")
        return .success(try reader.value(SpecReader.members(root)[0].value, kind, path: "k"))
    } catch {
        return .failure(error)
    }
}

@Test func listKindsAcceptOneIntegerOrAList() throws {
    #expect(try validate("3", .positiveInts(count: 2)).get() == .int(3))
    #expect(try validate("[3, 5]", .positiveInts(count: 2)).get() == .ints([3, 5]))
    #expect(try validate("[0, 1]", .nonNegativeInts(count: 2)).get() == .ints([0, 1]))
    #expect(validate("[3, 0]", .positiveInts(count: 2)).failure?.message
            == "t: k: expected a positive integer or a list of 2 positive integers, got [3,0]")
    #expect(validate("[3, 3, 3]", .positiveInts(count: 2)).failure?.message
            == "t: k: expected a positive integer or a list of 2 positive integers, got [3,3,3]")
    #expect(validate("[1, 4294967296]", .nonNegativeInts(count: 2)).failure?.message
            == "t: k: 4294967296 is too large (limit 2147483647)")
}

@Test func numberKindsCheckTheirRanges() throws {
    #expect(try validate("0", .numberHalfOpen(0..<1)).get() == .double(0))
    #expect(validate("1", .numberHalfOpen(0..<1)).failure?.message == "t: k: expected a number in [0, 1), got 1")
    #expect(try validate("1", .number(0...1)).get() == .double(1))
    #expect(validate("-Infinity", .number(-1e300...1e300)).failure?.message
            == "t: k: expected a number in [-1e+300, 1e+300], got -Infinity")
    #expect(validate("true", .number(0...1)).failure != nil)
}

@Test func choiceAndBool() throws {
    #expect(try validate(#""b""#, .choice(["a", "b"])).get() == .string("b"))
    #expect(validate(#""B""#, .choice(["a", "b"])).failure?.message == #"t: k: expected one of "a", "b", got "B""#)
    #expect(try validate("false", .bool).get() == .bool(false))
    #expect(validate("0", .bool).failure?.message == "t: k: expected true or false, got 0")
}

@Test func longValuesAreCutInMessages() {
    let long = "[" + Array(repeating: "1", count: 40).joined(separator: ",") + "]"
    #expect(validate(long, .bool).failure?.message == "t: k: expected true or false, got [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,...")
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
