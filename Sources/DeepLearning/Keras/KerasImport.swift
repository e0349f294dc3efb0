import CJSONC
import Glibc

/// Reads Keras models (docs/interop.md): a Keras 3 `.keras` archive (config.json and
/// model.weights.h5 in a zip), a legacy Keras `.h5` (the root attribute `model_config` and
/// the group `/model_weights`), and a `.weights.h5` given with one of our specs.
///
/// As for ONNX (`ONNXImport`), the Keras config becomes a spec (JSON read by `SpecParser`),
/// then the weights are loaded into the model it builds, so an imported model is an
/// ordinary trainable model. Models stay in this library's (C, H, W) layout: Keras's
/// channels-last kernels are transposed, and the first Dense after a channels-last
/// Flatten has its input rows reordered from (H, W, C) to (C, H, W) (the same reorder as
/// ONNX import, `reorderChannelsLastColumns`). Anything without an exact equivalent is
/// refused, naming the layer and the option.
///
/// The files may be crafted: the zip's entry sizes are checked before extraction, HDF5 is
/// read only through `HDF5Image` (a child process), and the JSON through json-c with every
/// value checked before use.
public enum KerasImport {
    /// Largest config.json (or legacy model_config) read.
    public static let maxConfigBytes = SpecParser.maxBytes
    /// Largest model.weights.h5 extracted from a `.keras` archive.
    public static let maxWeightsBytes = 4 << 30
    /// Keys `options` may set for `.keras` and `.h5` (they replace what the file says).
    public static let optionKeys = ONNXImport.optionKeys
    /// Keys `options` may set for a `.weights.h5`: "spec" (required: a spec object, or the
    /// path of a spec file) and "data_format" ("channels_last", Keras's default, or
    /// "channels_first": how the Keras model that saved the weights laid out its images).
    public static let weightsOptionKeys = ["spec", "data_format"]

    // MARK: Entry points

    /// Loads a Keras 3 `.keras` archive.
    public static func loadArchive(path: String, options: String? = nil) throws(DLError) -> any AnyModel {
        let zip = try ZipReader(path: path)
        let config = try zip.read("config.json", limit: maxConfigBytes)
        let translation = try translate(config: config, source: "\(path): config.json", options: options,
                                        metadata: try? zip.read("metadata.json", limit: 1 << 20))
        // The model first: a config problem is reported before a weights problem.
        let model = try translation.makeModel()
        // The weights file holds the model's values (float32, or float64 at most) and, for a
        // trained model, the optimizer's state (Adam: two more per parameter), plus HDF5's
        // own structures: more than that is not a Keras weights file but a bomb.
        let values = model.parameterCount + model.bufferShapes.reduce(0) { $0 + $1.reduce(1, *) }
        let (scaled, overflow) = values.multipliedReportingOverflow(by: 32)
        let limit = overflow ? maxWeightsBytes : min(maxWeightsBytes, scaled + (16 << 20))
        let weightsFile = try temporaryFile("keras-weights")
        defer { unlink(weightsFile) }
        try zip.extract("model.weights.h5", to: weightsFile, limit: limit)
        let image: HDF5Image
        do throws(DLError) { image = try HDF5Image(path: weightsFile, roots: ["layers"], recursive: true) } catch {
            // The temporary file's name means nothing to the caller.
            let detail = error.message.hasPrefix(weightsFile + ": ") ? String(error.message.dropFirst(weightsFile.count + 2)) : error.message
            throw DLError(error.kind, "\(path): model.weights.h5: \(detail)")
        }
        try translation.load(KerasWeights(image: image, source: "\(path): model.weights.h5", legacy: false), into: model)
        return model
    }

    /// Loads a legacy Keras `.h5` (model.save("x.h5")).
    public static func loadLegacy(path: String, options: String? = nil) throws(DLError) -> any AnyModel {
        let image = try HDF5Image(path: path, roots: ["/"], recursive: true)
        let translation = try translation(legacy: image, path: path, options: options)
        let model = try translation.makeModel()
        try translation.load(KerasWeights(image: image, source: path, legacy: true), into: model)
        return model
    }

    /// Loads a `.weights.h5` (model.save_weights) into the model `options`' "spec" builds.
    public static func loadWeights(path: String, options: String?) throws(DLError) -> any AnyModel {
        guard let options else {
            throw DLError(.invalidArgument, "options_json: a Keras .weights.h5 holds no architecture; give {\"spec\": <a spec object or the path of a spec file>}")
        }
        let given = try SpecParser.tokenize(Array(options.utf8), "options_json")
        defer { json_object_put(given) }
        let members = SpecReader.members(given)
        for member in members where !weightsOptionKeys.contains(member.key) {
            throw DLError(.invalidArgument, "options_json: unknown key \"\(member.key)\" for a .weights.h5; the keys are \(SpecReader.quoted(weightsOptionKeys))")
        }
        var channelsFirst = false
        if let format = SpecReader.member("data_format", members) {
            switch SpecReader.string(format) {
            case "channels_last": channelsFirst = false
            case "channels_first": channelsFirst = true
            default: throw DLError(.invalidArgument, "options_json: data_format: expected \"channels_last\" or \"channels_first\", got \(SpecReader.describe(format))")
            }
        }
        let spec: ModelSpec
        switch SpecReader.member("spec", members) {
        case .some(let value) where json_object_get_type(value) == json_type_object:
            guard let text = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN) else {
                throw DLError(.noMemory, "options_json: out of memory")
            }
            spec = try SpecParser.parse(json: String(cString: text), source: "options_json: spec")
        case .some(let value) where SpecReader.string(value) != nil:
            spec = try SpecParser.parse(file: SpecReader.string(value) ?? "")
        default:
            throw DLError(.invalidArgument, "options_json: \"spec\" is required for a .weights.h5: a spec object, or the path of a spec file")
        }
        let model = try makeModel(spec: spec)
        let image = try HDF5Image(path: path, roots: ["layers", "model_weights"], recursive: true)
        try WeightsMatcher(image: image, source: path, channelsFirst: channelsFirst).load(into: model)
        return model
    }

    /// Whether the HDF5 file at `path` is a legacy Keras model (root attribute `model_config`
    /// or a `/model_weights` group) rather than one of our checkpoints. Read in the child
    /// process like every untrusted file. A file that cannot be read throws the reader's
    /// error: reading it again as a checkpoint would fail the same way, and a file on which
    /// libhdf5 loops would cost the caller the reader's deadline twice.
    public static func isKerasH5(path: String) throws(DLError) -> Bool {
        let image = try HDF5Image(path: path, roots: ["/"], recursive: false)
        return image.hasAttribute("/", "model_config") || (image.groups["/"] ?? []).contains("model_weights")
    }

    /// What `path` (`.keras` or legacy `.h5`) would import as, without its weights: the spec,
    /// and notes on what changes (for `dl info`).
    public static func describe(path: String, format: ModelFormat, options: String? = nil) throws(DLError) -> KerasTranslation {
        switch format {
        case .keras:
            let zip = try ZipReader(path: path)
            return try translate(config: try zip.read("config.json", limit: maxConfigBytes), source: "\(path): config.json",
                                 options: options, metadata: try? zip.read("metadata.json", limit: 1 << 20))
        case .kerasH5:
            return try translation(legacy: try HDF5Image(path: path, roots: ["/"], recursive: false), path: path, options: options)
        default:
            throw DLError(.invalidArgument, "\(path): not a Keras model format")
        }
    }

    private static func translation(legacy image: HDF5Image, path: String, options: String?) throws(DLError) -> KerasTranslation {
        guard image.hasAttribute("/", "model_config") else {
            throw DLError(.format, "\(path): no model_config attribute at the root; not a Keras model file (a .weights.h5 needs format \"keras_weights\" and a spec)")
        }
        let config = Array(try image.attributeString("/", "model_config").utf8)
        var training: [UInt8]? = nil
        if image.hasAttribute("/", "training_config") { training = try? Array(image.attributeString("/", "training_config").utf8) }
        return try translate(config: config, source: "\(path): model_config", options: options, trainingConfig: training)
    }

    /// The spec `config` (Keras's model config JSON) translates to. `trainingConfig`: a legacy
    /// file's training_config (the compile settings); `metadata`: a `.keras` metadata.json.
    public static func translate(config: [UInt8], source: String, options: String? = nil,
                                 trainingConfig: [UInt8]? = nil, metadata: [UInt8]? = nil) throws(DLError) -> KerasTranslation {
        guard config.count <= maxConfigBytes else {
            throw DLError(.format, "\(source): \(config.count) bytes, more than a Keras config may be here (\(maxConfigBytes))")
        }
        let root: OpaquePointer
        do throws(DLError) { root = try SpecParser.tokenize(config, source) } catch {
            throw DLError(.format, error.message)
        }
        defer { json_object_put(root) }
        var training: OpaquePointer? = nil
        if let trainingConfig { training = try? SpecParser.tokenize(trainingConfig, "\(source): training_config") }
        defer { if let training { json_object_put(training) } }
        var meta: OpaquePointer? = nil
        if let metadata { meta = try? SpecParser.tokenize(metadata, "\(source): metadata.json") }
        defer { if let meta { json_object_put(meta) } }
        var mapper = KerasConfigMapper(source: source)
        return try mapper.translate(root, training: training, metadata: meta, options: options)
    }
}

/// A Keras config translated: the spec's JSON, where each layer's weights come from, and
/// notes on what the import changes.
public struct KerasTranslation {
    /// The spec (JSON) the model is built from.
    public var spec: String
    /// What differs from the Keras model (its optimizer not taken, the input layout, ...).
    public var notes: [String]
    /// The Keras layers read, each with the layer(s) of ours it became ("dense -> linear, relu").
    public var layerMap: [String]
    var plan: [KerasLayerPlan]
    let source: String

    /// The model the spec builds, with its initial weights.
    public func makeModel() throws(DLError) -> any AnyModel {
        try DeepLearning.makeModel(spec: try SpecParser.parse(json: spec, source: source))
    }

    func load(_ weights: KerasWeights, into model: any AnyModel) throws(DLError) {
        var layers: [ImportedLayer] = []
        for step in plan { layers.append(try weights.layer(step)) }
        try Reader(source: source, fileSize: 0).load(layers, into: model)
    }
}

/// Where one of our parameterised layers gets its values in the Keras file.
struct KerasLayerPlan {
    enum Kind {
        /// kernel (inputs, units) [+ bias]; rows reordered from (H, W, C) when `hwc` is set.
        case dense(inputs: Int, units: Int, bias: Bool, hwc: [Int]?)
        /// kernel (kh, kw, in, out) [+ bias].
        case conv(kernel: [Int], inputs: Int, filters: Int, bias: Bool)
        /// [gamma, beta,] moving_mean, moving_variance.
        case batchNorm(channels: Int, affine: Bool)
    }
    /// The layer's name (legacy .h5 files store its weights under it).
    var name: String
    /// Its name in a .keras archive's model.weights.h5 or a .weights.h5 (Keras 3 names by class).
    var archiveName: String
    var kind: Kind
}

/// The weights of a Keras file read through `HDF5Image`: Keras 3's layout
/// (layers/NAME/vars/0, 1, ...) or the legacy one (model_weights/NAME/.../kernel:0).
struct KerasWeights {
    let image: HDF5Image
    let source: String
    let legacy: Bool

    /// Keras's names of a layer's variables in their saving order.
    static func roles(_ kind: KerasLayerPlan.Kind) -> [String] {
        switch kind {
        case .dense(_, _, let bias, _), .conv(_, _, _, let bias): return bias ? ["kernel", "bias"] : ["kernel"]
        case .batchNorm(_, let affine): return (affine ? ["gamma", "beta"] : []) + ["moving_mean", "moving_variance"]
        }
    }

    /// The dataset names of layer `name`'s variables, in `roles` order.
    func datasets(_ name: String, _ roles: [String]) throws(DLError) -> [String] {
        if !legacy {
            let group = "layers/\(name)/vars"
            guard image.groups[group] != nil else {
                throw DLError(.format, "\(source): no weights for layer \"\(name)\" (group \(group) is missing)")
            }
            let present = (image.groups[group] ?? []).count
            guard present == roles.count else {
                throw DLError(.format, "\(source): layer \"\(name)\" has \(present) weight arrays; expected \(roles.count) (\(roles.joined(separator: ", ")))")
            }
            return (0..<roles.count).map { "\(group)/\($0)" }
        }
        let prefix = "model_weights/\(name)/"
        var found: [String: String] = [:]
        for dataset in image.datasets.keys where dataset.hasPrefix(prefix) {
            var last = String(dataset.split(separator: "/").last ?? "")
            if last.hasSuffix(":0") { last.removeLast(2) }
            guard roles.contains(last) else {
                throw DLError(.format, "\(source): layer \"\(name)\" has the weight \(dataset), which is not one of \(roles.joined(separator: ", "))")
            }
            guard found[last] == nil else { throw DLError(.format, "\(source): layer \"\(name)\" has two \(last) weights") }
            found[last] = dataset
        }
        var names: [String] = []
        for role in roles {
            guard let d = found[role] else { throw DLError(.format, "\(source): layer \"\(name)\" has no \(role) weight") }
            names.append(d)
        }
        return names
    }

    /// The values of `dataset`, which must be floating point of exactly `shape`.
    func values(_ dataset: String, _ shape: [Int], _ what: String) throws(DLError) -> [Float] {
        let d = try image.describe(dataset)
        guard d.isFloat else { throw DLError(.format, "\(source): \(what) (\(dataset)) holds \(d.typeClass) values; expected floating point") }
        guard d.shape == shape else {
            throw DLError(.format, "\(source): \(what) (\(dataset)) has shape \(d.shape); the config says \(shape)")
        }
        let count = try checkedCount(shape, what)
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { (p) throws(DLError) in
            guard let base = p.baseAddress else { return }
            try image.read(dataset, into: base, count: count)
        }
        guard out.allSatisfy({ $0.isFinite }) else { throw DLError(.format, "\(source): \(what) (\(dataset)) holds a NaN or an infinity") }
        return out
    }

    func layer(_ step: KerasLayerPlan) throws(DLError) -> ImportedLayer {
        let roles = KerasWeights.roles(step.kind)
        let names = try datasets(legacy ? step.name : step.archiveName, roles)
        var layer = ImportedLayer(type: "")
        switch step.kind {
        case .dense(let inputs, let units, let bias, let hwc):
            var weight = transpose(try values(names[0], [inputs, units], "layer \"\(step.name)\" kernel"), rows: inputs, cols: units)
            if let hwc {
                guard let w = reorderChannelsLastColumns(weight, chw: [hwc[2], hwc[0], hwc[1]]) else {
                    throw DLError(.internal, "\(source): layer \"\(step.name)\": channels-last reorder")
                }
                weight = w
            }
            layer.parameters = [weight]
            if bias { layer.parameters.append(try values(names[1], [units], "layer \"\(step.name)\" bias")) }
        case .conv(let kernel, let inputs, let filters, let bias):
            let k = try values(names[0], [kernel[0], kernel[1], inputs, filters], "layer \"\(step.name)\" kernel")
            layer.parameters = [kerasKernelToOurs(k, kh: kernel[0], kw: kernel[1], inputs: inputs, filters: filters)]
            if bias { layer.parameters.append(try values(names[1], [filters], "layer \"\(step.name)\" bias")) }
        case .batchNorm(let c, let affine):
            var arrays: [[Float]] = []
            for (i, role) in roles.enumerated() { arrays.append(try values(names[i], [c], "layer \"\(step.name)\" \(role)")) }
            guard arrays[arrays.count - 1].allSatisfy({ $0 >= 0 }) else {
                throw DLError(.format, "\(source): layer \"\(step.name)\": the moving variance has negative values")
            }
            layer.parameters = affine ? [arrays[0], arrays[1]] : []
            layer.buffers = Array(arrays.suffix(2))
        }
        return layer
    }
}

/// Keras's conv kernel (kh, kw, in, out) as ours (out, in, kh, kw).
func kerasKernelToOurs(_ k: [Float], kh: Int, kw: Int, inputs: Int, filters: Int) -> [Float] {
    var out = [Float](repeating: 0, count: k.count)
    for y in 0..<kh { for x in 0..<kw { for i in 0..<inputs { for o in 0..<filters {
        out[((o * inputs + i) * kh + y) * kw + x] = k[((y * kw + x) * inputs + i) * filters + o]
    } } } }
    return out
}

/// Our conv kernel (out, in, kh, kw) as Keras's (kh, kw, in, out).
func ourKernelToKeras(_ k: [Float], kh: Int, kw: Int, inputs: Int, filters: Int) -> [Float] {
    var out = [Float](repeating: 0, count: k.count)
    for y in 0..<kh { for x in 0..<kw { for i in 0..<inputs { for o in 0..<filters {
        out[((y * kw + x) * inputs + i) * filters + o] = k[((o * inputs + i) * kh + y) * kw + x]
    } } } }
    return out
}
