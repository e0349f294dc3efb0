import CJSONC

/// Edits of a spec's JSON text. A model keeps (and a checkpoint carries) the text its spec
/// came from, so a changed setting is written into that text with json-c, which
/// re-serialises the document and keeps everything else in it.
extension ModelSpec {
    /// This spec with another input transform.
    public func with(preprocessing p: Preprocessing) throws(DLError) -> ModelSpec {
        var spec = self
        spec.json = try rewritten { (root) throws(DLError) in
            let object = json_object_new_object()
            json_object_object_add(object, "scale", json_object_new_double(p.scale))
            json_object_object_add(object, "mean", json_object_new_double(p.mean))
            json_object_object_add(object, "std", json_object_new_double(p.std))
            json_object_object_add(root, "preprocessing", object)     // takes ownership of `object`
        }
        spec.preprocessing = p
        return spec
    }

    /// This spec with another seed and/or learning rate (`optimizer.lr`), for a training
    /// run's command-line overrides. The text is parsed again, so the new values are
    /// validated as a spec file's would be and a checkpoint stores the spec the model was
    /// really built from.
    public func with(seed: UInt64? = nil, learningRate: Double? = nil) throws(DLError) -> ModelSpec {
        if seed == nil && learningRate == nil { return self }
        let text = try rewritten { (root) throws(DLError) in
            if let seed {
                guard let value = Int64(exactly: seed) else {
                    throw DLError(.spec, "\(source): seed: expected an integer from 0 to \(Int64.max), got \(seed)")
                }
                json_object_object_add(root, "seed", json_object_new_int64(value))
            }
            if let learningRate {
                var optimizer: OpaquePointer? = nil
                guard json_object_object_get_ex(root, "optimizer", &optimizer) != 0, let optimizer,
                      json_object_get_type(optimizer) == json_type_object else {
                    throw DLError(.spec, "\(source): optimizer: expected an object to set the learning rate in")
                }
                json_object_object_add(optimizer, "lr", json_object_new_double(learningRate))
            }
        }
        return try SpecParser.parse(json: text, source: source)
    }

    /// The spec's text after `edit` has changed its json-c tree.
    private func rewritten(_ edit: (OpaquePointer) throws(DLError) -> Void) throws(DLError) -> String {
        let root = try SpecParser.tokenize(Array(json.utf8), source)
        defer { json_object_put(root) }
        try edit(root)
        guard let text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) else {
            throw DLError(.noMemory, "out of memory writing the spec")
        }
        return String(cString: text) + "\n"
    }
}

extension Model {
    /// Makes the model standardize its raw inputs with `p`, in training and prediction alike.
    public func setPreprocessing(_ p: Preprocessing) throws(DLError) {
        try p.validate()        // the spec parser's rules: what is set here can be saved and loaded
        spec = try spec.with(preprocessing: p)
    }
}
