import CJSONC

/// Keras's model config (config.json, or a legacy file's model_config) mapped to a spec.
///
/// The walk keeps the Keras tensor's shape and how Keras stores it: flat, images stored
/// (H, W, C) (channels_last) or (C, H, W) (channels_first). Our model always works in
/// (C, H, W); only a Flatten of (H, W, C) images changes the order of values, and the
/// Dense after it takes its kernel's rows reordered (`KerasLayerPlan.Kind.dense(hwc:)`).
struct KerasConfigMapper {
    let source: String
    private var layers: [ImportedLayer] = []
    private var plan: [KerasLayerPlan] = []
    private var notes: [String] = []
    private var layerMap: [String] = []
    private var preprocessing = Preprocessing()
    /// Each layer's name in a .keras archive's model.weights.h5, by its own name.
    private var archiveNames: [String: String] = [:]

    enum Stored: Equatable { case flat, hwc, chw }
    /// The current tensor, one sample: Keras's shape and how it is stored.
    private var shape: [Int] = []
    private var stored = Stored.flat
    /// The (H, W, C) a channels-last Flatten just made flat, until the Dense that reads it.
    private var pendingHWC: [Int]? = nil
    /// The model's image layout, from its first layer that says (channels_last by default).
    private var channelsFirst = false

    init(source: String) { self.source = source }

    func unsupported(_ layer: String, _ message: String) -> DLError {
        DLError(.unsupported, "\(source): layer \"\(layer)\": \(message)")
    }
    func malformed(_ message: String) -> DLError { DLError(.format, "\(source): \(message)") }

    // MARK: JSON access

    typealias Members = [SpecReader.Member]

    private func object(_ value: JSONValue, _ what: String) throws(DLError) -> Members {
        guard json_object_get_type(value) == json_type_object else {
            throw malformed("\(what): expected an object, got \(SpecReader.describe(value))")
        }
        return SpecReader.members(value)
    }

    private func string(_ members: Members, _ key: String) -> String? {
        SpecReader.member(key, members).flatMap { SpecReader.string($0) }
    }

    private func isNull(_ members: Members, _ key: String) -> Bool {
        guard let v = SpecReader.member(key, members) else { return true }
        return v == nil || json_object_get_type(v) == json_type_null
    }

    /// An integer, or a list of `count` integers (Keras writes kernel_size as 3 or [3, 3]).
    private func ints(_ members: Members, _ key: String, count: Int, layer: String, range: ClosedRange<Int> = 1...Limits.maxTensorElements) throws(DLError) -> [Int]? {
        guard let v = SpecReader.member(key, members), let value = v, json_object_get_type(value) != json_type_null else { return nil }
        func one(_ x: JSONValue) throws(DLError) -> Int {
            guard json_object_get_type(x) == json_type_int else {
                throw malformed("layer \"\(layer)\": \(key): expected integers, got \(SpecReader.describe(value))")
            }
            let n = json_object_get_int64(x)
            guard let i = Int(exactly: n), range.contains(i) else {
                throw unsupported(layer, "\(key) \(SpecReader.describe(value)) is out of range (\(range.lowerBound) to \(range.upperBound))")
            }
            return i
        }
        if json_object_get_type(value) == json_type_array {
            let items = SpecReader.elements(value)
            guard items.count == count else {
                throw malformed("layer \"\(layer)\": \(key) has \(items.count) entries; expected \(count)")
            }
            var result: [Int] = []
            for item in items { result.append(try one(item)) }
            return result
        }
        return [Int](repeating: try one(value), count: count)
    }

    private func number(_ members: Members, _ key: String, layer: String) throws(DLError) -> Double? {
        guard let v = SpecReader.member(key, members), let value = v, json_object_get_type(value) != json_type_null else { return nil }
        guard let x = SpecReader.number(value) else {
            throw malformed("layer \"\(layer)\": \(key): expected a number, got \(SpecReader.describe(value))")
        }
        return x
    }

    private func bool(_ members: Members, _ key: String, default d: Bool, layer: String) throws(DLError) -> Bool {
        guard let v = SpecReader.member(key, members), let value = v, json_object_get_type(value) != json_type_null else { return d }
        guard json_object_get_type(value) == json_type_boolean else {
            throw malformed("layer \"\(layer)\": \(key): expected true or false, got \(SpecReader.describe(value))")
        }
        return json_object_get_boolean(value) != 0
    }

    /// A batch shape ([null, d1, ...]) as one sample's shape.
    private func sampleShape(_ value: JSONValue, _ what: String) throws(DLError) -> [Int] {
        guard json_object_get_type(value) == json_type_array else { throw malformed("\(what): expected a list, got \(SpecReader.describe(value))") }
        let items = SpecReader.elements(value)
        guard items.count >= 2 else { throw unsupported("input", "\(what) \(SpecReader.describe(value)): expected (batch, ...) of rank 2 or 4") }
        var dims: [Int] = []
        for item in items.dropFirst() {
            guard json_object_get_type(item) == json_type_int, let d = Int(exactly: json_object_get_int64(item)),
                  d > 0, d <= Limits.maxTensorElements else {
                throw unsupported("input", "\(what) \(SpecReader.describe(value)): every dimension but the batch must be a fixed positive size")
            }
            dims.append(d)
        }
        _ = try checkedCount(dims, "\(source): \(what)")
        return dims
    }

    // MARK: The model

    mutating func translate(_ root: OpaquePointer, training: OpaquePointer?, metadata: OpaquePointer?, options: String?) throws(DLError) -> KerasTranslation {
        let top = try object(root, "the config")
        guard let className = string(top, "class_name") else { throw malformed("the config has no class_name; not a Keras model config") }
        guard ["Sequential", "Functional", "Model"].contains(className) else {
            throw DLError(.unsupported, "\(source): the model is a \(className); only Sequential models and functional models that are a chain of layers are read")
        }
        guard let configValue = SpecReader.member("config", top) else { throw malformed("the config has no \"config\"") }
        let config = try object(configValue, "config")
        guard let layerList = SpecReader.member("layers", config), let layerArray = layerList,
              json_object_get_type(layerArray) == json_type_array else {
            throw malformed("config.layers is missing or not a list")
        }
        var entries: [(cls: String, name: String, config: Members, raw: Members)] = []
        for (i, item) in SpecReader.elements(layerArray).enumerated() {
            let raw = try object(item, "config.layers[\(i)]")
            guard let cls = string(raw, "class_name") else { throw malformed("config.layers[\(i)] has no class_name") }
            let layerConfig = try SpecReader.member("config", raw).map { (v) throws(DLError) in try object(v, "config.layers[\(i)].config") } ?? []
            let name = string(layerConfig, "name") ?? string(raw, "name") ?? "\(cls.lowercased())_\(i)"
            entries.append((cls, name, layerConfig, raw))
        }
        if className != "Sequential" { try checkChain(entries.map { ($0.name, $0.raw) }, config) }

        // The image layout: the first layer that says.
        for e in entries where ["Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"].contains(e.cls) {
            if let f = string(e.config, "data_format") { channelsFirst = f == "channels_first" }
            break
        }

        // The input shape.
        var input: [Int]? = nil
        var rest = entries[...]
        if let first = entries.first, first.cls == "InputLayer" {
            guard let v = SpecReader.member("batch_shape", first.config) ?? SpecReader.member("batch_input_shape", first.config), let value = v else {
                throw malformed("the InputLayer has no batch_shape")
            }
            input = try sampleShape(value, "InputLayer batch_shape")
            rest = entries.dropFirst()
            layerMap.append("\(first.name) (InputLayer) -> input")
        } else if let first = entries.first, let v = SpecReader.member("batch_input_shape", first.config), let value = v {
            input = try sampleShape(value, "layer \"\(first.name)\" batch_input_shape")
        } else if let v = SpecReader.member("build_input_shape", config), let value = v {
            input = try sampleShape(value, "build_input_shape")
        } else if let b = SpecReader.member("build_config", top), let build = b,
                  let v = SpecReader.member("input_shape", SpecReader.members(build)), let value = v {
            input = try sampleShape(value, "build_config.input_shape")
        }
        guard let input else { throw DLError(.unsupported, "\(source): the model's input shape is not in the config (a Sequential model that was never built)") }
        switch input.count {
        case 1: stored = .flat
        case 3:
            stored = channelsFirst ? .chw : .hwc
            if !channelsFirst && input[2] > 1 {
                notes.append("the Keras model takes channels-last images (H, W, C) = \(input); the imported model takes them as (C, H, W) = \([input[2], input[0], input[1]]): transpose the data (numpy: x.transpose(0, 3, 1, 2))")
            }
        default:
            throw DLError(.unsupported, "\(source): the input has shape \(input) per sample; only flat vectors and images (rank 3) are read")
        }
        shape = input
        let ourInput = ours(shape)
        guard !rest.isEmpty else { throw DLError(.unsupported, "\(source): the model has no layers") }
        // Keras 3 stores a model's layers in model.weights.h5 under names made from their
        // classes (dense, dense_1, ... in model order), not their own names.
        var used: [String: Int] = [:]
        for e in entries {
            let base = KerasConfigMapper.snakeCase(e.cls)
            let n = used[base].map { $0 + 1 } ?? 0
            used[base] = n
            archiveNames[e.name] = n == 0 ? base : "\(base)_\(n)"
        }
        for e in rest {
            let before = layers.count
            try layer(e.cls, e.name, e.config)
            // Sizes from the file may multiply beyond the tensor limit (or Int).
            _ = try checkedCount(shape, "\(source): layer \"\(e.name)\": output of one sample, \(shape)")
            let became = layers[before...].map(\.type)
            layerMap.append("\(e.name) (\(e.cls)) -> \(became.isEmpty ? (preprocessing.isIdentity ? "nothing (identity in inference)" : "preprocessing") : became.joined(separator: ", "))")
        }
        if pendingHWC != nil {
            throw DLError(.unsupported, "\(source): the model ends with a channels-last Flatten; its output order (H, W, C) has no equivalent here (end with a Dense layer)")
        }
        guard !layers.isEmpty else { throw DLError(.unsupported, "\(source): the model has no layer this library can train") }

        let json = try specJSON(input: ourInput, top: top, training: training, metadata: metadata, options: options)
        return KerasTranslation(spec: json, notes: notes, layerMap: layerMap, plan: plan, source: source)
    }

    /// A functional model must be a chain: each layer reads only the one before it.
    private func checkChain(_ entries: [(name: String, raw: Members)], _ config: Members) throws(DLError) {
        var previous: String? = nil
        for (name, raw) in entries {
            let inbound = SpecReader.member("inbound_nodes", raw).flatMap { $0 }.map { SpecReader.elements($0) } ?? []
            if previous == nil {
                guard inbound.isEmpty else { throw DLError(.unsupported, "\(source): layer \"\(name)\": a functional model must start with its InputLayer") }
            } else {
                guard inbound.count == 1 else {
                    throw DLError(.unsupported, "\(source): layer \"\(name)\" is called \(inbound.count) times; only chains of layers (each used once) are read")
                }
                let sources = inboundLayers(inbound[0])
                guard sources == [previous!] else {
                    throw DLError(.unsupported, "\(source): layer \"\(name)\" reads \(sources.map { "\"\($0)\"" }.joined(separator: ", ")), not just the layer before it (\"\(previous!)\"); only chains of layers are read (no branches)")
                }
            }
            previous = name
        }
        if let o = SpecReader.member("output_layers", config), let outputs = o {
            var flat = SpecReader.elements(outputs)
            if flat.count == 1, json_object_get_type(flat[0]) == json_type_array { flat = SpecReader.elements(flat[0]) }
            guard let first = flat.first, SpecReader.string(first) == previous else {
                throw DLError(.unsupported, "\(source): the model's output is not its last layer; only chains of layers with one output are read")
            }
        }
    }

    /// The names of the layers an inbound node reads: Keras 3's {"args": [keras tensors]}
    /// or Keras 2's [[name, node, tensor, kwargs], ...].
    private func inboundLayers(_ node: JSONValue) -> [String] {
        var names: [String] = []
        func visit(_ v: JSONValue, depth: Int) {
            guard depth < 16 else { return }
            switch json_object_get_type(v) {
            case json_type_object:
                let m = SpecReader.members(v)
                if let h = SpecReader.member("keras_history", m), let history = h {
                    if let first = SpecReader.elements(history).first, let s = SpecReader.string(first) { names.append(s) }
                    return
                }
                for (key, value) in m where key == "args" || key == "config" { visit(value, depth: depth + 1) }
            case json_type_array:
                let items = SpecReader.elements(v)
                if let first = items.first, let s = SpecReader.string(first), items.count >= 3,
                   json_object_get_type(items[1]) == json_type_int {
                    names.append(s)
                    return
                }
                for item in items { visit(item, depth: depth + 1) }
            default: break
            }
        }
        visit(node, depth: 0)
        return names
    }

    /// Keras's naming.to_snake_case: "BatchNormalization" -> "batch_normalization",
    /// "Conv2D" -> "conv2d", "LeakyReLU" -> "leaky_re_lu".
    static func snakeCase(_ name: String) -> String {
        let chars = Array(name.filter { $0.isLetter || $0.isNumber || $0 == "_" })
        var out: [Character] = []
        for (i, c) in chars.enumerated() {
            if i > 0, c.isUppercase {
                let next = i + 1 < chars.count ? chars[i + 1] : nil
                // (.)([A-Z][a-z]+) and ([a-z])([A-Z]): an upper-case letter starting a word.
                if (next.map { $0.isLowercase } ?? false) || chars[i - 1].isLowercase { out.append("_") }
            }
            out.append(c)
        }
        return String(out).lowercased()
    }

    /// Our (C, H, W) or flat shape of a Keras shape stored as `stored`.
    private func ours(_ s: [Int]) -> [Int] {
        stored == .hwc && s.count == 3 ? [s[2], s[0], s[1]] : s
    }

    // MARK: Layers

    /// Options every layer may carry without changing inference.
    static let common: Set<String> = ["name", "trainable", "dtype", "batch_input_shape", "batch_shape", "build_config", "input_dim", "input_shape"]

    private func refuseOthers(_ cls: String, _ name: String, _ config: Members, _ known: Set<String>) throws(DLError) {
        for (key, value) in config where !KerasConfigMapper.common.contains(key) && !known.contains(key) {
            // Regularisers, constraints and the like are only refused when set.
            if value == nil || json_object_get_type(value) == json_type_null { continue }
            if key.hasSuffix("_initializer") { continue }   // weights come from the file
            throw unsupported(name, "\(cls) option \(key) = \(SpecReader.describe(value)) is not supported")
        }
        // Mixed precision computes in float16; the imported model computes in float32.
        if let d = SpecReader.member("dtype", config), let dtype = d {
            var policy = SpecReader.string(dtype)
            if policy == nil, json_object_get_type(dtype) == json_type_object,
               let c = SpecReader.member("config", SpecReader.members(dtype)), let inner = c {
                policy = string(SpecReader.members(inner), "name")
            }
            if let policy, policy != "float32" {
                throw unsupported(name, "dtype \"\(policy)\": only float32 layers are read")
            }
        }
    }

    private mutating func emit(_ layer: ImportedLayer) { layers.append(layer) }

    private mutating func requireFlat(_ cls: String, _ name: String) throws(DLError) -> Int {
        guard shape.count == 1 else {
            throw unsupported(name, "\(cls) on an input of shape \(shape) per sample acts on the last axis only; only flat input is read (put a Flatten before it)")
        }
        return shape[0]
    }

    private mutating func requireImages(_ cls: String, _ name: String, _ config: Members) throws(DLError) {
        guard shape.count == 3 else { throw unsupported(name, "\(cls) needs images, but its input has shape \(shape) per sample") }
        let format = string(config, "data_format") ?? "channels_last"
        guard format == "channels_last" || format == "channels_first" else {
            throw unsupported(name, "data_format \"\(format)\" is not channels_last or channels_first")
        }
        let wanted: Stored = format == "channels_first" ? .chw : .hwc
        guard wanted == stored else {
            throw unsupported(name, "data_format \(format) after layers that store images \(stored == .hwc ? "channels_last" : "channels_first"); mixed layouts are not read")
        }
    }

    /// (H, W, C-or-filters) split of the current image shape.
    private var hw: (h: Int, w: Int, c: Int) {
        stored == .hwc ? (shape[0], shape[1], shape[2]) : (shape[1], shape[2], shape[0])
    }

    private mutating func setImage(h: Int, w: Int, c: Int) {
        shape = stored == .hwc ? [h, w, c] : [c, h, w]
    }

    /// Keras's padding for one axis: "valid" none; "same" pads (out - 1) s + k - n in all, the
    /// extra one at the end when odd, which is refused (ours is the same at both ends).
    private func padding(_ mode: String, n: Int, k: Int, s: Int, layer: String, axis: String) throws(DLError) -> Int {
        switch mode {
        case "valid":
            guard n >= k else { throw unsupported(layer, "the \(axis) kernel \(k) is larger than the input's \(n)") }
            return 0
        case "same":
            let out = (n + s - 1) / s
            let total = max((out - 1) * s + k - n, 0)
            guard total % 2 == 0 else {
                throw unsupported(layer, "padding \"same\" pads the \(axis) unevenly (\(total / 2) before, \(total - total / 2) after, with kernel \(k) and stride \(s) on \(n)); only even padding is represented (use odd kernels with stride 1, or sizes that divide evenly)")
            }
            return total / 2
        default:
            throw unsupported(layer, "padding \"\(mode)\" is not supported (valid, same)")
        }
    }

    /// The layers an activation name becomes.
    private mutating func activation(_ name: String, layer: String) throws(DLError) {
        switch name {
        case "linear", "": return
        case "relu", "sigmoid", "tanh": emit(ImportedLayer(type: name))
        case "softmax":
            guard shape.count == 1 else {
                throw unsupported(layer, "softmax over images: Keras's is over the last axis, this library's over all of a sample's values")
            }
            emit(ImportedLayer(type: "softmax"))
        case "elu": emit(ImportedLayer(type: "elu", options: [("alpha", .double(1))]))
        case "gelu": emit(ImportedLayer(type: "gelu", options: [("approximate", .string("none"))]))
        case "silu", "swish": emit(ImportedLayer(type: "silu"))
        case "softplus": emit(ImportedLayer(type: "softplus"))
        case "leaky_relu": emit(ImportedLayer(type: "leaky_relu", options: [("alpha", .double(0.2))]))
        default:
            throw unsupported(layer, "activation \"\(name)\" has no equivalent here (linear, relu, sigmoid, tanh, softmax, elu, gelu, silu, swish, softplus, leaky_relu)")
        }
    }

    private mutating func activationOption(_ config: Members, _ name: String) throws(DLError) {
        guard let a = SpecReader.member("activation", config), let value = a, json_object_get_type(value) != json_type_null else { return }
        guard let s = SpecReader.string(value) else {
            throw unsupported(name, "activation \(SpecReader.describe(value)): only activations given by name are read")
        }
        try activation(s, layer: name)
    }

    private mutating func layer(_ cls: String, _ name: String, _ config: Members) throws(DLError) {
        // After a channels-last Flatten, only layers that do not care about the order of the
        // values may come before the Dense whose rows are reordered.
        if pendingHWC != nil, !["Dense", "Dropout", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"].contains(cls) {
            throw unsupported(name, "\(cls) after a channels-last Flatten: only a Dense (with Dropout or activations between) may follow one")
        }
        switch cls {
        case "Dense":
            try refuseOthers(cls, name, config, ["units", "activation", "use_bias", "lora_rank", "lora_alpha", "quantization_config"])
            if let r = try ints(config, "lora_rank", count: 1, layer: name, range: 0...Int.max), r != [0] { throw unsupported(name, "LoRA is not supported") }
            let inputs = try requireFlat(cls, name)
            guard let units = try ints(config, "units", count: 1, layer: name)?[0] else { throw malformed("layer \"\(name)\": Dense has no units") }
            let bias = try bool(config, "use_bias", default: true, layer: name)
            var l = ImportedLayer(type: "linear", options: [("units", .int(units))])
            if !bias { l.options.append(("bias", .bool(false))) }
            emit(l)
            plan.append(KerasLayerPlan(name: name, archiveName: archiveNames[name] ?? name, kind: .dense(inputs: inputs, units: units, bias: bias, hwc: pendingHWC)))
            pendingHWC = nil
            shape = [units]
            try activationOption(config, name)
        case "Conv2D":
            try refuseOthers(cls, name, config, ["filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation", "use_bias"])
            try requireImages(cls, name, config)
            guard let filters = try ints(config, "filters", count: 1, layer: name)?[0],
                  let kernel = try ints(config, "kernel_size", count: 2, layer: name) else {
                throw malformed("layer \"\(name)\": Conv2D needs filters and kernel_size")
            }
            let strides = try ints(config, "strides", count: 2, layer: name) ?? [1, 1]
            if let d = try ints(config, "dilation_rate", count: 2, layer: name), d != [1, 1] { throw unsupported(name, "dilation_rate \(d) is not supported") }
            if let g = try ints(config, "groups", count: 1, layer: name), g != [1] { throw unsupported(name, "groups \(g[0]) (grouped convolution) is not supported") }
            let mode = string(config, "padding") ?? "valid"
            let (h, w, c) = hw
            let ph = try padding(mode, n: h, k: kernel[0], s: strides[0], layer: name, axis: "height")
            let pw = try padding(mode, n: w, k: kernel[1], s: strides[1], layer: name, axis: "width")
            let bias = try bool(config, "use_bias", default: true, layer: name)
            var l = ImportedLayer(type: "conv2d", options: [("filters", .int(filters)), ("kernel_size", .ints(kernel)),
                                                          ("stride", .ints(strides)), ("padding", .ints([ph, pw]))])
            if !bias { l.options.append(("bias", .bool(false))) }
            emit(l)
            plan.append(KerasLayerPlan(name: name, archiveName: archiveNames[name] ?? name, kind: .conv(kernel: kernel, inputs: c, filters: filters, bias: bias)))
            setImage(h: (h + 2 * ph - kernel[0]) / strides[0] + 1, w: (w + 2 * pw - kernel[1]) / strides[1] + 1, c: filters)
            try activationOption(config, name)
        case "MaxPooling2D", "AveragePooling2D":
            try refuseOthers(cls, name, config, ["pool_size", "strides", "padding", "data_format"])
            try requireImages(cls, name, config)
            let kernel = try ints(config, "pool_size", count: 2, layer: name) ?? [2, 2]
            let strides = try ints(config, "strides", count: 2, layer: name) ?? kernel
            let mode = string(config, "padding") ?? "valid"
            let (h, w, c) = hw
            let ph = try padding(mode, n: h, k: kernel[0], s: strides[0], layer: name, axis: "height")
            let pw = try padding(mode, n: w, k: kernel[1], s: strides[1], layer: name, axis: "width")
            let average = cls == "AveragePooling2D"
            if average && (ph > 0 || pw > 0) {
                throw unsupported(name, "AveragePooling2D with padding \"same\" that pads: Keras leaves the padding out of the average, this library counts it")
            }
            guard 2 * ph <= kernel[0], 2 * pw <= kernel[1] else { throw unsupported(name, "padding larger than half the pool size") }
            emit(ImportedLayer(type: average ? "avg_pool2d" : "max_pool2d",
                               options: [("kernel_size", .ints(kernel)), ("stride", .ints(strides)), ("padding", .ints([ph, pw]))]))
            setImage(h: (h + 2 * ph - kernel[0]) / strides[0] + 1, w: (w + 2 * pw - kernel[1]) / strides[1] + 1, c: c)
        case "GlobalAveragePooling2D":
            try refuseOthers(cls, name, config, ["data_format", "keepdims"])
            try requireImages(cls, name, config)
            guard !(try bool(config, "keepdims", default: false, layer: name)) else { throw unsupported(name, "keepdims = true is not supported") }
            let (h, w, c) = hw
            emit(ImportedLayer(type: "avg_pool2d", options: [("kernel_size", .ints([h, w])), ("stride", .ints([h, w]))]))
            emit(ImportedLayer(type: "flatten"))
            shape = [c]
            stored = .flat
        case "BatchNormalization":
            try refuseOthers(cls, name, config, ["axis", "momentum", "epsilon", "center", "scale", "synchronized", "renorm", "renorm_clipping", "renorm_momentum"])
            if try bool(config, "renorm", default: false, layer: name) { throw unsupported(name, "renorm = true is not supported") }
            var axis = try ints(config, "axis", count: 1, layer: name, range: -4...3)?[0] ?? -1
            let rank = shape.count + 1
            if axis < 0 { axis += rank }
            let channelAxis = shape.count == 1 ? 1 : (stored == .hwc ? 3 : 1)
            guard axis == channelAxis else {
                throw unsupported(name, "axis \(axis) on a (batch, \(shape.map(String.init).joined(separator: ", "))) input: only the feature axis of flat input or the channel axis of images is normalised here")
            }
            let center = try bool(config, "center", default: true, layer: name), scale = try bool(config, "scale", default: true, layer: name)
            guard center == scale else { throw unsupported(name, "center = \(center) with scale = \(scale): this library learns both or neither (affine)") }
            let eps = try number(config, "epsilon", layer: name) ?? 1e-3
            guard eps >= 1e-12, eps <= 1 else { throw unsupported(name, "epsilon \(eps) is outside this library's range [1e-12, 1]") }
            let momentum = try number(config, "momentum", layer: name) ?? 0.99
            guard (0...1).contains(momentum) else { throw unsupported(name, "momentum \(momentum) is outside [0, 1]") }
            var l = ImportedLayer(type: "batch_norm", options: [("eps", .double(eps)), ("momentum", .double(1 - momentum))])
            if !center { l.options.append(("affine", .bool(false))) }
            emit(l)
            let channels = shape.count == 1 ? shape[0] : hw.c
            plan.append(KerasLayerPlan(name: name, archiveName: archiveNames[name] ?? name, kind: .batchNorm(channels: channels, affine: center)))
        case "Dropout":
            try refuseOthers(cls, name, config, ["rate", "seed", "noise_shape"])
            if !isNull(config, "noise_shape") { throw unsupported(name, "noise_shape (dropout shared across axes) is not supported") }
            let rate = try number(config, "rate", layer: name) ?? 0.5
            guard rate >= 0, rate < 1 else { throw unsupported(name, "rate \(rate) is outside [0, 1)") }
            emit(ImportedLayer(type: "dropout", options: [("rate", .double(rate))]))
        case "Flatten":
            try refuseOthers(cls, name, config, ["data_format"])
            guard shape.count == 3 else { return }
            let format = string(config, "data_format") ?? "channels_last"
            // Keras's channels_first Flatten moves the channels last before flattening.
            let hwcOrder: Bool
            switch (stored, format) {
            case (.hwc, "channels_last"), (.chw, "channels_first"): hwcOrder = true
            case (.chw, "channels_last"): hwcOrder = false
            default: throw unsupported(name, "Flatten with data_format \(format) of images stored channels_last")
            }
            let (h, w, c) = hw
            if hwcOrder && c > 1 { pendingHWC = [h, w, c] }
            emit(ImportedLayer(type: "flatten"))
            shape = [try checkedCount(shape, "\(source): layer \"\(name)\" output")]
            stored = .flat
        case "Reshape":
            try refuseOthers(cls, name, config, ["target_shape"])
            guard let t = SpecReader.member("target_shape", config), let value = t, json_object_get_type(value) == json_type_array else {
                throw malformed("layer \"\(name)\": Reshape has no target_shape")
            }
            var target: [Int] = []
            for item in SpecReader.elements(value) {
                guard json_object_get_type(item) == json_type_int, let d = Int(exactly: json_object_get_int64(item)),
                      d == -1 || (d > 0 && d <= Limits.maxTensorElements) else {
                    throw unsupported(name, "target_shape \(SpecReader.describe(value)): expected positive sizes (one may be -1)")
                }
                target.append(d)
            }
            let count = try checkedCount(shape, "\(source): layer \(name) input")
            if let unknown = target.firstIndex(of: -1) {
                guard target.filter({ $0 == -1 }).count == 1 else { throw unsupported(name, "target_shape \(target) has more than one -1") }
                let known = try checkedCount(target.filter { $0 != -1 }, "\(source): layer \(name) target")
                guard known > 0, count % known == 0 else {
                    throw unsupported(name, "target_shape \(target) does not fit the input \(shape)")
                }
                target[unknown] = count / known
            }
            guard try checkedCount(target, "\(source): layer \(name) target") == count else {
                throw unsupported(name, "target_shape \(target) holds a different number of values than the input \(shape)")
            }
            switch (shape.count, target.count) {
            case (1, 1): break
            case (1, 3):
                let isHWC = !channelsFirst
                if isHWC && target[2] > 1 {
                    throw unsupported(name, "Reshape of flat input to channels-last images \(target) with \(target[2]) channels: the values would be in (H, W, C) order, this library's images are (C, H, W)")
                }
                stored = isHWC ? .hwc : .chw
                shape = target
                emit(ImportedLayer(type: "reshape", options: [("shape", .ints(ours(target)))]))
            case (3, 1):
                try layer("Flatten", name, [])
            default:
                guard target == shape else { throw unsupported(name, "Reshape of images \(shape) to \(target) is not supported (flat to images, or images to flat)") }
            }
        case "Activation":
            try refuseOthers(cls, name, config, ["activation"])
            try activationOption(config, name)
        case "ReLU":
            try refuseOthers(cls, name, config, ["max_value", "negative_slope", "threshold"])
            if let m = try number(config, "max_value", layer: name) { throw unsupported(name, "max_value \(m) (a capped ReLU) is not supported") }
            if let t = try number(config, "threshold", layer: name), t != 0 { throw unsupported(name, "threshold \(t) is not supported") }
            let slope = try number(config, "negative_slope", layer: name) ?? 0
            if slope == 0 { emit(ImportedLayer(type: "relu")) } else {
                guard slope > 0, slope <= 1 else { throw unsupported(name, "negative_slope \(slope) is outside [0, 1]") }
                emit(ImportedLayer(type: "leaky_relu", options: [("alpha", .double(slope))]))
            }
        case "LeakyReLU":
            try refuseOthers(cls, name, config, ["negative_slope", "alpha"])
            let given = try number(config, "negative_slope", layer: name)
            let legacyAlpha = try number(config, "alpha", layer: name)
            let slope = given ?? legacyAlpha ?? 0.3
            guard slope >= 0, slope <= 1 else { throw unsupported(name, "negative_slope \(slope) is outside [0, 1]") }
            emit(ImportedLayer(type: "leaky_relu", options: [("alpha", .double(slope))]))
        case "ELU":
            try refuseOthers(cls, name, config, ["alpha"])
            let alpha = try number(config, "alpha", layer: name) ?? 1
            guard alpha >= 0, alpha <= 1e6 else { throw unsupported(name, "alpha \(alpha) is outside [0, 1e6]") }
            emit(ImportedLayer(type: "elu", options: [("alpha", .double(alpha))]))
        case "Softmax":
            try refuseOthers(cls, name, config, ["axis"])
            let axis = try ints(config, "axis", count: 1, layer: name, range: -4...3)?[0] ?? -1
            guard shape.count == 1, axis == -1 || axis == 1 else {
                throw unsupported(name, "Softmax over axis \(axis) of a \(shape) input: only a softmax over each sample's flat features is read")
            }
            emit(ImportedLayer(type: "softmax"))
        case "Rescaling", "Normalization":
            guard layers.isEmpty else {
                throw unsupported(name, "\(cls) after other layers: only the input's scaling before every layer is read (it becomes the spec's preprocessing)")
            }
            try scaling(cls, name, config)
        case "InputLayer":
            throw unsupported(name, "an InputLayer in the middle of the model")
        default:
            throw unsupported(name, "the layer class \(cls) is not supported (see docs/interop.md for the layers that are)")
        }
    }

    /// Rescaling (x scale + offset) then Normalization ((x - mean) / sqrt(variance)), each at
    /// most once, as the spec's preprocessing (x scale - mean) / std.
    private mutating func scaling(_ cls: String, _ name: String, _ config: Members) throws(DLError) {
        if cls == "Rescaling" {
            try refuseOthers(cls, name, config, ["scale", "offset"])
            guard preprocessing.isIdentity else { throw unsupported(name, "a second Rescaling, or one after Normalization") }
            guard let s = SpecReader.member("scale", config), let sv = s, let scale = SpecReader.number(sv) else {
                throw unsupported(name, "scale: only one number (the same for every value) is read")
            }
            var offset = 0.0
            if let o = SpecReader.member("offset", config), let ov = o {
                guard let x = SpecReader.number(ov) else { throw unsupported(name, "offset: only one number (the same for every value) is read") }
                offset = x
            }
            guard Preprocessing.scaleRange.contains(scale) else { throw unsupported(name, "scale \(scale) is outside this library's range [1e-12, 1e12]") }
            guard Preprocessing.meanRange.contains(-offset) else { throw unsupported(name, "offset \(offset) is outside this library's range") }
            preprocessing = Preprocessing(scale: scale, mean: offset == 0 ? 0 : -offset, std: 1)
        } else {
            try refuseOthers(cls, name, config, ["axis", "mean", "variance", "invert"])
            if try bool(config, "invert", default: false, layer: name) { throw unsupported(name, "invert = true is not supported") }
            guard preprocessing.std == 1 else { throw unsupported(name, "a second Normalization") }
            guard let m = SpecReader.member("mean", config), let mv = m, let mean = SpecReader.number(mv),
                  let v = SpecReader.member("variance", config), let vv = v, let variance = SpecReader.number(vv) else {
                throw unsupported(name, "Normalization with per-feature statistics (adapted, or given as lists): only one mean and variance for every value are read")
            }
            let std = max(variance.squareRoot(), 1e-7)   // Keras divides by max(sqrt(variance), epsilon)
            guard Preprocessing.stdRange.contains(std) else { throw unsupported(name, "variance \(variance) is outside this library's range") }
            let m2 = preprocessing.mean + mean
            guard Preprocessing.meanRange.contains(m2) else { throw unsupported(name, "mean \(mean) is outside this library's range") }
            preprocessing = Preprocessing(scale: preprocessing.scale, mean: m2, std: std)
        }
    }

    // MARK: The spec

    private mutating func specJSON(input: [Int], top: Members, training: OpaquePointer?, metadata: OpaquePointer?, options: String?) throws(DLError) -> String {
        var name = "keras_import"
        if let c = SpecReader.member("config", top), let cv = c, let n = string(SpecReader.members(cv), "name"), !n.isEmpty { name = n }
        let root = ImportedSpec.root(name: name, inputShape: input, layers: layers, preprocessing: preprocessing)
        defer { json_object_put(root) }
        // The compile settings: Keras 3's compile_config, or a legacy file's training_config.
        var compile: Members = []
        if let c = SpecReader.member("compile_config", top), let cv = c { compile = SpecReader.members(cv) }
        else if let training { compile = SpecReader.members(training) }
        let outputs = try checkedCount(shape, "\(source): the output")
        ImportedSpec.add(root, "loss", loss(compile, outputs: outputs))
        ImportedSpec.add(root, "optimizer", optimizer(compile))

        // A model this library exported carries its spec (metadata.json): its settings come back.
        var saved: String? = nil
        if let metadata, let s = SpecReader.member("deeplearning_spec", SpecReader.members(metadata)), let sv = s {
            saved = SpecReader.string(sv)
        }
        return try ImportedSpec.finish(root, keys: KerasImport.optionKeys, saved: saved,
                                       savedSource: "\(source): metadata.json", options: options)
    }

    /// Keras's loss as ours; a loss we do not have gives the default (cross-entropy for
    /// several outputs, MSE for one) and a note.
    private mutating func loss(_ compile: Members, outputs: Int) -> OpaquePointer? {
        let fallback = outputs > 1 ? "cross_entropy" : "mse"
        guard let l = SpecReader.member("loss", compile), let value = l else { return json_object_new_string(fallback) }
        var name = SpecReader.string(value)
        var config: Members = []
        if name == nil, json_object_get_type(value) == json_type_object {
            let m = SpecReader.members(value)
            name = string(m, "class_name")
            if let c = SpecReader.member("config", m), let cv = c { config = SpecReader.members(cv) }
        }
        switch name ?? "" {
        case "sparse_categorical_crossentropy", "categorical_crossentropy", "SparseCategoricalCrossentropy", "CategoricalCrossentropy":
            if layers.last?.type == "softmax" {
                notes.append("the model ends with a softmax and Keras's cross-entropy takes its probabilities; this library's cross_entropy applies a softmax of its own, so fine-tuning would see two: for Keras's exact loss, import with a loss of your choice or train the model without its last softmax")
            }
            let o = json_object_new_object()
            json_object_object_add(o, "type", json_object_new_string("cross_entropy"))
            if let s = try? number(config, "label_smoothing", layer: "loss"), s > 0, s <= 1 {
                json_object_object_add(o, "label_smoothing", json_object_new_double(s))
            }
            return o
        case "binary_crossentropy", "BinaryCrossentropy": return json_object_new_string("binary_cross_entropy")
        case "mse", "mean_squared_error", "MeanSquaredError": return json_object_new_string("mse")
        case "huber", "huber_loss", "Huber":
            let o = json_object_new_object()
            json_object_object_add(o, "type", json_object_new_string("huber"))
            if let d = try? number(config, "delta", layer: "loss"), d >= 1e-12, d <= 1e12 { json_object_object_add(o, "delta", json_object_new_double(d)) }
            return o
        default:
            notes.append("loss: \(fallback) (Keras's loss \(SpecReader.describe(value)) has no equivalent here)")
            return json_object_new_string(fallback)
        }
    }

    /// Keras's optimizer as ours when it is one we have with options we have; otherwise
    /// Adam with lr 0.001 (the notes say which).
    private mutating func optimizer(_ compile: Members) -> OpaquePointer? {
        var why = "the file names no optimizer"
        func fallback() -> OpaquePointer? {
            notes.append("optimizer: Adam with lr 0.001 (\(why))")
            let o = json_object_new_object()
            json_object_object_add(o, "type", json_object_new_string("adam"))
            json_object_object_add(o, "lr", json_object_new_double(0.001))
            return o
        }
        guard let opt = SpecReader.member("optimizer", compile) ?? SpecReader.member("optimizer_config", compile), let value = opt,
              json_object_get_type(value) == json_type_object else { return fallback() }
        let m = SpecReader.members(value)
        guard let cls = string(m, "class_name"), let c = SpecReader.member("config", m), let cv = c else { return fallback() }
        why = "Keras's \(cls) with these settings has no equivalent here"
        let config = SpecReader.members(cv)
        func num(_ key: String) -> Double? { (try? number(config, key, layer: "optimizer")) ?? nil }
        /// Present, not null and not false.
        func isSet(_ key: String) -> Bool {
            guard !isNull(config, key), let v = SpecReader.member(key, config), let value = v else { return false }
            return !(json_object_get_type(value) == json_type_boolean && json_object_get_boolean(value) == 0)
        }
        guard let lr = num("learning_rate") ?? num("lr"), lr >= 0, lr <= 1e6 else { return fallback() }
        // Options with no equivalent here: per-variable clipping, EMA, AMSGrad, centred RMSprop.
        for key in ["clipnorm", "clipvalue", "use_ema", "amsgrad", "centered", "gradient_accumulation_steps", "loss_scale_factor"] where isSet(key) {
            return fallback()
        }
        let o = json_object_new_object()
        json_object_object_add(o, "lr", json_object_new_double(lr))
        if let g = num("global_clipnorm"), g > 0, g <= 1e12 { json_object_object_add(o, "clip_norm", json_object_new_double(g)) }
        let decay = num("weight_decay") ?? 0
        switch cls {
        case "SGD":
            json_object_object_add(o, "type", json_object_new_string("sgd"))
            guard decay == 0 else { json_object_put(o); return fallback() }
            if let mo = num("momentum"), mo > 0, mo < 1 { json_object_object_add(o, "momentum", json_object_new_double(mo)) }
            if isSet("nesterov"), (num("momentum") ?? 0) > 0 { json_object_object_add(o, "nesterov", json_object_new_boolean(1)) }
        case "Adam", "AdamW":
            json_object_object_add(o, "type", json_object_new_string(cls == "AdamW" || decay > 0 ? "adamw" : "adam"))
            if let b = num("beta_1"), b >= 0, b < 1 { json_object_object_add(o, "beta1", json_object_new_double(b)) }
            if let b = num("beta_2"), b >= 0, b < 1 { json_object_object_add(o, "beta2", json_object_new_double(b)) }
            if let e = num("epsilon"), e >= 0, e <= 1 { json_object_object_add(o, "eps", json_object_new_double(e)) }
            if cls == "AdamW" || decay > 0 { json_object_object_add(o, "weight_decay", json_object_new_double(min(max(decay, 0), 1e6))) }
        case "RMSprop":
            json_object_object_add(o, "type", json_object_new_string("rmsprop"))
            guard decay == 0, (num("momentum") ?? 0) == 0 else { json_object_put(o); return fallback() }
            if let r = num("rho"), r >= 0, r < 1 { json_object_object_add(o, "rho", json_object_new_double(r)) }
            if let e = num("epsilon"), e >= 0, e <= 1 { json_object_object_add(o, "eps", json_object_new_double(e)) }
        default:
            json_object_put(o)
            return fallback()
        }
        return o
    }
}
