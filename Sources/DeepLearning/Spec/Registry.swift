/// The registries' common parts. Every kind of component (layer, loss, optimizer,
/// schedule, initializer) is a type that declares a `ComponentKind` (its name, its options
/// as `OptionSpec`s with their types, ranges, defaults and docs, and a one-line doc), listed
/// once in its registry. The parser, `specs/schema.json`, the option tables of
/// `specs/README.md` (`SpecDocs`) and `dl_registry_json` are all read from these lists.
public enum Registries {
    /// The registries' names, in the order the docs list them.
    public static let nouns = ["layer", "loss", "optimizer", "schedule", "initializer"]

    /// Each registry's kinds, under the name its entries take in a spec ("layer").
    public static var all: [(noun: String, kinds: [ComponentKind])] { nouns.map { ($0, kinds($0)) } }

    /// The kinds of the registry of `noun`.
    public static func kinds(_ noun: String) -> [ComponentKind] {
        switch noun {
        case "layer": return LayerRegistry.kinds
        case "loss": return LossRegistry.kinds
        case "optimizer": return OptimizerRegistry.kinds
        case "schedule": return ScheduleRegistry.kinds
        case "initializer": return InitializerRegistry.kinds
        default: return []
        }
    }
}

/// The entry of `entries` whose kind is named `type`; a spec error naming `path` otherwise
/// (the parser refuses unknown types first, so this is met by hand-built specs).
func lookup<E>(_ type: String, in entries: [E], kind: (E) -> ComponentKind, noun: String, path: String) throws(DLError) -> E {
    if let entry = entries.first(where: { kind($0).type == type }) { return entry }
    let names = entries.map { "\"\(kind($0).type)\"" }.joined(separator: ", ")
    throw DLError(.spec, "\(path.isEmpty ? noun : path).type: unknown \(noun) type \"\(type)\"; the \(noun) types are \(names)")
}
