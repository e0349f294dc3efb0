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
