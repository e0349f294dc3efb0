import CJSONC

extension SpecParser {
    /// One layer object as it appears in a spec's "layers" list, e.g.
    /// `{"type": "linear", "in_features": 784, "units": 128}`; messages name it "layer".
    public static func parseLayer(json: String) throws(DLError) -> ComponentSpec {
        try parseComponent(json) { (reader, root) throws(DLError) in
            try reader.component(root, path: "layer", noun: "layer", kinds: LayerRegistry.kinds)
        }
    }

    /// A loss as it appears in a spec: `{"type": "huber", "delta": 1.0}` or `"mse"`.
    public static func parseLoss(json: String) throws(DLError) -> ComponentSpec {
        try parseComponent(json) { (reader, root) throws(DLError) in
            try reader.componentOrName(root, path: "loss", noun: "loss", kinds: LossRegistry.kinds)
        }
    }

    private static func parseComponent(_ json: String, _ read: (SpecReader, OpaquePointer) throws(DLError) -> ComponentSpec) throws(DLError) -> ComponentSpec {
        // Not only objects: a loss may be given by its name alone ("mse").
        let root = try tokenize(Array(json.utf8), "<string>", requireObject: false)
        defer { json_object_put(root) }
        return try read(SpecReader(source: "<string>"), root)
    }
}

extension ModelSpec {
    /// This spec with another input transform, its JSON text rewritten to match (json-c
    /// re-serialises the document; everything else in it is kept).
    public func with(preprocessing p: Preprocessing) throws(DLError) -> ModelSpec {
        let root = try SpecParser.tokenize(Array(json.utf8), source)
        defer { json_object_put(root) }
        let object = json_object_new_object()
        json_object_object_add(object, "scale", json_object_new_double(p.scale))
        json_object_object_add(object, "mean", json_object_new_double(p.mean))
        json_object_object_add(object, "std", json_object_new_double(p.std))
        json_object_object_add(root, "preprocessing", object)     // takes ownership of `object`
        guard let text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) else {
            throw DLError(.noMemory, "out of memory writing the spec")
        }
        var spec = self
        spec.preprocessing = p
        spec.json = String(cString: text) + "\n"
        return spec
    }
}

extension Model {
    public func setPreprocessing(_ p: Preprocessing) throws(DLError) {
        guard p.scale.isFinite, p.mean.isFinite, p.std.isFinite, p.scale > 0, p.std > 0 else {
            throw .invalid("preprocessing needs finite values with scale > 0 and std > 0, got scale \(p.scale), mean \(p.mean), std \(p.std)")
        }
        spec = try spec.with(preprocessing: p)
    }
}
