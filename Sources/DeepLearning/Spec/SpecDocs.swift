/// What the registries generate: `specs/schema.json`, the option tables of `specs/README.md`
/// and the registry as JSON for bindings (`dl_registry_json`). `dl spec schema` and
/// `dl spec docs` write the files; a test fails when the committed ones differ.
public enum SpecDocs {
    // MARK: JSON Schema

    /// specs/schema.json: the spec format as a JSON Schema (draft 2020-12).
    public static func schema() -> String {
        let size = JSON.object([("type", "integer"), ("minimum", .int(1)), ("maximum", .int(Limits.maxTensorElements))])
        var properties: [(String, JSON)] = [
            ("format_version", .object([("const", .int(ModelSpec.formatVersion))])),
            ("name", .object([("type", "string")])),
            ("input", .object([
                ("type", "object"), ("additionalProperties", false), ("minProperties", .int(1)), ("maxProperties", .int(1)),
                ("properties", .object([("size", ref("size")), ("shape", ref("shape"))])),
            ])),
            ("input_size", ref("size")),
            ("input_shape", ref("shape")),
            ("layers", .object([("type", "array"), ("minItems", .int(1)), ("items", ref("layer"))])),
            ("loss", ref("loss")),
            ("optimizer", ref("optimizer")),
            ("preprocessing", object(Preprocessing.kind, typed: false)),
        ]
        properties += SpecReader.settings.options.filter { $0.name != "format_version" }.map { ($0.name, schema($0)) }
        var defs: [(String, JSON)] = [
            ("size", size),
            ("shape", .object([("type", "array"), ("minItems", .int(1)), ("maxItems", .int(3)), ("items", ref("size"))])),
        ]
        for (noun, kinds) in Registries.all where noun != "initializer" {
            // Losses and schedules may also be given by name alone.
            let named = noun == "loss" || noun == "schedule" ? [JSON.object([("enum", .array(kinds.map { .string($0.type) }))])] : []
            defs.append((noun, .object([("oneOf", .array(named + kinds.map { object($0, typed: true) }))])))
        }
        return JSON.object([
            ("$schema", "https://json-schema.org/draft/2020-12/schema"),
            ("title", .string("deeplearning model spec, format_version \(ModelSpec.formatVersion)")),
            ("description", "A sequential model, its loss and its optimizer. Generated from the library's registries by `dl spec schema`; see specs/README.md. Give the input exactly one way: \"input\", \"input_size\" or \"input_shape\"."),
            ("type", "object"),
            ("additionalProperties", false),
            ("required", .array(["layers", "loss", "optimizer"])),
            ("oneOf", .array(["input", "input_size", "input_shape"].map { .object([("required", .array([.string($0)]))]) })),
            ("properties", .object(properties)),
            ("$defs", .object(defs)),
        ]).text() + "\n"
    }

    private static func ref(_ name: String) -> JSON { .object([("$ref", .string("#/$defs/\(name)"))]) }

    /// A component's object: its "type" (when `typed`), its options, the required ones.
    private static func object(_ kind: ComponentKind, typed: Bool) -> JSON {
        let type: [(String, JSON)] = typed ? [("type", .object([("const", .string(kind.type))]))] : []
        let required = (typed ? ["type"] : []) + kind.options.filter(\.isRequired).map(\.name)
        return .object([("description", .string(kind.doc)), ("type", "object"), ("additionalProperties", false)]
                       + (required.isEmpty ? [] : [("required", .array(required.map { .string($0) }))])
                       + [("properties", .object(type + kind.options.map { ($0.name, schema($0)) }))])
    }

    /// One option's schema, with its doc and (when it is a value of the option) its default.
    private static func schema(_ option: OptionSpec) -> JSON {
        let int = { (least: Int, most: Int) in JSON.object([("type", "integer"), ("minimum", .int(least)), ("maximum", .int(most))]) }
        let oneOrList = { (item: JSON, count: Int) in
            [("oneOf", JSON.array([item, .object([("type", "array"), ("minItems", .int(count)), ("maxItems", .int(count)), ("items", item)])]))]
        }
        var fields: [(String, JSON)] = option.doc.isEmpty ? [] : [("description", .string(option.doc))]
        switch option.kind {
        case .positiveInt: fields += int(1, Limits.maxTensorElements).members
        case .nonNegativeInt: fields += int(0, Int.max).members
        case .number(let r): fields += [("type", "number"), ("minimum", .number(r.lowerBound)), ("maximum", .number(r.upperBound))]
        case .numberHalfOpen(let r):
            fields += [("type", "number"), ("minimum", .number(r.lowerBound)), ("exclusiveMaximum", .number(r.upperBound))]
        case .bool: fields += [("type", "boolean")]
        case .choice(let names): fields += [("enum", .array(names.map { .string($0) }))]
        case .positiveInts(let count): fields += oneOrList(int(1, Limits.maxTensorElements), count)
        case .nonNegativeInts(let count): fields += oneOrList(int(0, Limits.maxTensorElements), count)
        case .component(let noun): fields += ref(noun).members
        }
        if let value = shownDefault(option) { fields.append(("default", value)) }
        return .object(fields)
    }

    /// The default as JSON, when it is a value the option accepts (some options use an
    /// out-of-range default to mean "not given", such as linear's in_features 0).
    private static func shownDefault(_ option: OptionSpec) -> JSON? {
        switch (option.kind, option.defaultValue) {
        case (.positiveInt, .int(let n)?), (.positiveInts, .int(let n)?): return n >= 1 ? .int(n) : nil
        case (.nonNegativeInt, .int(let n)?), (.nonNegativeInts, .int(let n)?): return .int(n)
        case (.number(let r), let v?): return v.number.flatMap { r.contains($0) ? .number($0) : nil }
        case (.numberHalfOpen(let r), let v?): return v.number.flatMap { r.contains($0) ? .number($0) : nil }
        case (.bool, .bool(let b)?): return .bool(b)
        case (.choice(let names), .string(let s)?): return names.contains(s) ? .string(s) : nil
        case (.component, .component(let c)?): return c.options.isEmpty ? .string(c.type) : nil
        default: return nil
        }
    }

    // MARK: Markdown

    /// The option table of one registry, for specs/README.md.
    public static func table(_ kinds: [ComponentKind]) -> String {
        var lines = ["| type | option | value | default | meaning |", "|---|---|---|---|---|"]
        for kind in kinds {
            lines.append("| `\(kind.type)` | | | | \(cell(kind.doc)) |")
            for option in kind.options {
                let value: String
                if case .component(let noun) = option.kind { value = "a \(noun) object, or a \(noun) name" } else {
                    value = option.kind.expectation
                }
                let shown = option.isRequired ? "required" : shownDefault(option).map { "`\($0.text())`" } ?? "optional"
                lines.append("| | `\(option.name)` | \(cell(value)) | \(shown) | \(cell(option.doc)) |")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The table of names and docs, for registries whose entries take no options (initializers).
    public static func nameTable(_ kinds: [ComponentKind]) -> String {
        (["| name | meaning |", "|---|---|"] + kinds.map { "| `\($0.type)` | \(cell($0.doc)) |" }).joined(separator: "\n")
    }

    private static func cell(_ text: String) -> String { text.replacingAll("|", with: "\\|") }

    /// `readme` with the text between each pair of markers
    /// `<!-- generated: NOUN -->` and `<!-- end generated -->` replaced by that registry's
    /// table; throws when a registry's marker is missing.
    public static func readme(updating readme: String) throws(DLError) -> String {
        var text = readme
        for (noun, kinds) in Registries.all {
            let begin = "<!-- generated: \(noun) -->", end = "<!-- end generated -->"
            guard let start = text.firstRange(of: begin), let stop = text[start.upperBound...].firstRange(of: end) else {
                throw .invalid("the README has no \"\(begin)\" ... \"\(end)\" markers")
            }
            let table = noun == "initializer" ? nameTable(kinds) : table(kinds)
            text.replaceSubrange(start.upperBound..<stop.lowerBound, with: "\n" + table + "\n")
        }
        return text
    }

    /// The README at `path` with its generated tables brought up to date.
    public static func readme(file path: String) throws(DLError) -> String {
        try readme(updating: String(decoding: try SpecParser.readFile(path), as: UTF8.self))
    }

    // MARK: The registry for bindings

    /// Every registry as JSON: `{"layer": [{"type", "doc", "options": [{"name", "value",
    /// "required", "default", "doc", "schema"}]}], "loss": [...], ...}`; "default" is
    /// present when the option has one that is a valid value.
    public static func registryJSON() -> String {
        JSON.object(Registries.all.map { noun, kinds in
            (noun, .array(kinds.map { kind in
                .object([("type", .string(kind.type)), ("doc", .string(kind.doc)), ("options", .array(kind.options.map { option in
                    .object([("name", .string(option.name)), ("value", .string(option.kind.expectation)),
                             ("required", .bool(option.isRequired))]
                            + (shownDefault(option).map { [("default", $0)] } ?? [])
                            + [("doc", .string(option.doc)), ("schema", schema(option))])
                }))])
            }))
        }).text() + "\n"
    }
}

extension SpecValue {
    var number: Double? {
        switch self {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: return nil
        }
    }
}

extension String {
    /// This string with every `target` replaced (the library does without Foundation).
    func replacingAll(_ target: Character, with replacement: String) -> String {
        reduce(into: "") { $0 += $1 == target ? replacement : String($1) }
    }
}

/// A JSON value for the generated files, written with two-space indentation and short
/// arrays of scalars on one line.
enum JSON: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral {
    case object([(String, JSON)])
    case array([JSON])
    case string(String)
    case number(Double)
    case int(Int)
    case bool(Bool)

    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: JSON...) { self = .array(elements) }

    var members: [(String, JSON)] {
        if case .object(let m) = self { return m }
        return []
    }

    private var isScalar: Bool {
        switch self {
        case .object, .array: return false
        default: return true
        }
    }

    private var isScalarArray: Bool {
        if case .array(let items) = self { return items.allSatisfy(\.isScalar) }
        return false
    }

    func text(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case .object(let members):
            // Small objects of scalars read best on one line: {"type": "integer", "minimum": 1}.
            if members.allSatisfy({ $0.1.isScalar || $0.1.isScalarArray }) {
                let line = "{" + members.map { JSON.quote($0.0) + ": " + $0.1.text() }.joined(separator: ", ") + "}"
                if line.count <= 100 { return line }
            }
            return "{\n" + members.map { inner + JSON.quote($0.0) + ": " + $0.1.text(indent: inner) }.joined(separator: ",\n")
                + "\n" + indent + "}"
        case .array(let items):
            if items.allSatisfy(\.isScalar) { return "[" + items.map { $0.text() }.joined(separator: ", ") + "]" }
            return "[\n" + items.map { inner + $0.text(indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        case .string(let s): return JSON.quote(s)
        case .number(let x): return format(x)
        case .int(let n): return String(n)
        case .bool(let b): return b ? "true" : "false"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
