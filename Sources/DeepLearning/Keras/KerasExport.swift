import CHDF5
import CDeepLearningHDF5
import CJSONC
import Glibc

/// Writes a model as a Keras 3 `.keras` archive or a legacy Keras `.h5` that
/// `keras.models.load_model` opens and that predicts what the model predicts.
///
/// The Keras model keeps this library's layout: images are channels_first (C, H, W), so
/// it takes the same raw inputs as `predict`, and its Flatten (channels_last, Keras's
/// default, which flattens in stored order) gives the (C, H, W) order our linear layers
/// were trained on: no weight is reordered. Conv kernels become (kh, kw, in, out), dense
/// weights (in, out). The preprocessing becomes a `Rescaling` layer (x * scale / std -
/// mean / std, the folded form `predict` computes). Padding that Keras's "same" does not
/// give becomes a `ZeroPadding2D` before the layer (average pooling counts the padding, as
/// ours does); max pooling with other padding is refused (zeros are not max-pooling's
/// padding). The model's spec rides along in metadata.json, so importing the file back
/// restores the loss, optimizer and other settings.
public enum KerasExport {
    /// The Keras version written in the files (the format of Keras 3).
    public static let kerasVersion = "3.0.0"

    public static func writeArchive(_ model: any AnyModel, to path: String) throws(DLError) {
        let graph = try KerasGraph(model)
        let weights = try temporaryFile("keras-export")
        defer { unlink(weights) }
        try HDF5File.locked { () throws(DLError) in
            let file = try HDF5File.create(weights, variableLengthStrings: true)
            try file.createGroup("layers")
            for layer in graph.layers {
                try file.createGroup("layers/\(layer.name)")
                try file.createGroup("layers/\(layer.name)/vars")
                try file.setAttribute("layers/\(layer.name)/vars", "name", string: layer.name)
                for (i, w) in layer.weights.enumerated() {
                    try w.values.withUnsafeBufferPointer { (p) throws(DLError) in
                        try file.write("layers/\(layer.name)/vars/\(i)", shape: w.shape, p.baseAddress!)
                    }
                }
            }
            try file.createGroup("vars")
            try file.setAttribute("vars", "name", string: graph.name)
            file.close()
        }
        let config = try graph.config(legacy: false)
        let metadata = try json([("keras_version", json_object_new_string(kerasVersion)),
                                 ("date_saved", json_object_new_string("")),
                                 ("deeplearning_version", json_object_new_string("\(Version.string)")),
                                 ("deeplearning_spec", json_object_new_string(model.spec.json))])
        let zip = try ZipWriter(path: path)
        try zip.add("metadata.json", bytes: Array(metadata.utf8))
        try zip.add("config.json", bytes: Array(config.utf8))
        try zip.add("model.weights.h5", file: weights)
        try zip.finish()
    }

    /// A legacy Keras `.h5` (what Keras 2's model.save("x.h5") wrote; Keras 3 still loads it).
    public static func writeLegacy(_ model: any AnyModel, to path: String) throws(DLError) {
        let graph = try KerasGraph(model)
        let config = try graph.config(legacy: true)
        let temporary = path + ".tmp-\(getpid())"
        do throws(DLError) {
            try HDF5File.locked { () throws(DLError) in
                let file = try HDF5File.create(temporary, variableLengthStrings: true)
                try file.setAttribute("/", "model_config", string: config)
                try file.setAttribute("/", "keras_version", string: kerasVersion)
                try file.setAttribute("/", "backend", string: "jax")
                try file.setAttribute("/", "deeplearning_spec", string: model.spec.json)
                try file.createGroup("model_weights")
                try file.setAttribute("model_weights", "keras_version", string: kerasVersion)
                try file.setAttribute("model_weights", "backend", string: "jax")
                try file.setAttribute("model_weights", "layer_names", strings: graph.layers.map(\.name))
                for layer in graph.layers {
                    let group = "model_weights/\(layer.name)"
                    try file.createGroup(group)
                    try file.createGroup("\(group)/\(layer.name)")
                    try file.setAttribute(group, "weight_names", strings: layer.weights.map { "\(layer.name)/\($0.role)" })
                    for w in layer.weights {
                        try w.values.withUnsafeBufferPointer { (p) throws(DLError) in
                            try file.write("\(group)/\(layer.name)/\(w.role)", shape: w.shape, p.baseAddress!)
                        }
                    }
                }
                file.close()
            }
            guard rename(temporary, path) == 0 else {
                throw DLError(.io, "\(path): cannot replace the file: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temporary)
            throw error
        }
    }
}

/// json-c helpers for building configs.
func json(_ members: [(String, OpaquePointer?)]) throws(DLError) -> String {
    let o = jsonObject(members)
    defer { json_object_put(o) }
    guard let text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) else {
        throw DLError(.noMemory, "out of memory writing JSON")
    }
    return String(cString: text)
}

func jsonObject(_ members: [(String, OpaquePointer?)]) -> OpaquePointer? {
    let o = json_object_new_object()
    for (k, v) in members { json_object_object_add(o, k, v) }
    return o
}

func jsonArray(_ items: [OpaquePointer?]) -> OpaquePointer? {
    let a = json_object_new_array()
    for v in items { json_object_array_add(a, v) }
    return a
}

func jsonInts(_ v: [Int?]) -> OpaquePointer? { jsonArray(v.map { $0.map { json_object_new_int64(Int64($0)) } ?? nil }) }

/// The Keras layers a model becomes.
struct KerasGraph {
    struct Weight { var role: String; var shape: [Int]; var values: [Float] }
    struct Layer {
        var cls: String
        var name: String
        var options: [(String, OpaquePointer?)]
        var weights: [Weight] = []
        var inputShape: [Int]
    }
    var name: String
    var inputShape: [Int]
    var layers: [Layer] = []
    var spec: ModelSpec
    private var counts: [String: Int] = [:]

    init(_ model: any AnyModel) throws(DLError) {
        if let m = model as? Model<Float> { self = try KerasGraph(generic: m) }
        else if let m = model as? Model<Double> { self = try KerasGraph(generic: m) }
        else { throw DLError(.internal, "Keras export: unknown model type \(type(of: model))") }
    }

    /// Keras's default names: dense, dense_1, dense_2, ...
    private mutating func add(_ cls: String, _ base: String, _ options: [(String, OpaquePointer?)], weights: [Weight] = [], input: [Int]) {
        let n = counts[base, default: 0]
        counts[base] = n + 1
        layers.append(Layer(cls: cls, name: n == 0 ? base : "\(base)_\(n)", options: options, weights: weights, inputShape: input))
    }

    private init<T: DLScalar>(generic model: Model<T>) throws(DLError) {
        spec = model.spec
        name = spec.name.isEmpty ? "deeplearning" : spec.name
        inputShape = model.inputShape
        func values(_ p: Parameter<T>) -> [Float] { p.values.map { Float($0) } }
        func unsupported(_ i: Int, _ message: String) -> DLError {
            DLError(.unsupported, "Keras export: layer \(i) (\(model.layers[i].type)): \(message)")
        }
        let p = spec.preprocessing
        if !p.isIdentity {
            add("Rescaling", "rescaling", [("scale", json_object_new_double(p.multiplier)), ("offset", json_object_new_double(p.offset))], input: inputShape)
        }
        var shape = model.inputShape
        for (i, layer) in model.layers.enumerated() {
            let options = i < spec.layers.count ? spec.layers[i] : ComponentSpec(type: layer.type)
            switch layer {
            case let l as Linear<T>:
                let kernel = transpose(values(l.weight), rows: l.outFeatures, cols: l.inFeatures)
                var w = [Weight(role: "kernel", shape: [l.inFeatures, l.outFeatures], values: kernel)]
                if let b = l.bias { w.append(Weight(role: "bias", shape: [l.outFeatures], values: values(b))) }
                add("Dense", "dense", [("units", json_object_new_int64(Int64(l.outFeatures))), ("activation", json_object_new_string("linear")),
                                       ("use_bias", json_object_new_boolean(l.bias != nil ? 1 : 0))], weights: w, input: shape)
            case let l as Conv2D<T>:
                let win = l.window
                let padding = try paddingMode(win, allowZeroPad: true)
                if padding == "zeros" {
                    add("ZeroPadding2D", "zero_padding2d", [("padding", jsonArray([jsonInts([win.padHeight, win.padHeight]), jsonInts([win.padWidth, win.padWidth])])),
                                                            ("data_format", json_object_new_string("channels_first"))], input: shape)
                }
                let kernel = ourKernelToKeras(values(l.weight), kh: win.kernelHeight, kw: win.kernelWidth, inputs: l.inChannels, filters: l.filters)
                var w = [Weight(role: "kernel", shape: [win.kernelHeight, win.kernelWidth, l.inChannels, l.filters], values: kernel)]
                if let b = l.bias { w.append(Weight(role: "bias", shape: [l.filters], values: values(b))) }
                add("Conv2D", "conv2d", [("filters", json_object_new_int64(Int64(l.filters))),
                                         ("kernel_size", jsonInts([win.kernelHeight, win.kernelWidth])),
                                         ("strides", jsonInts([win.strideHeight, win.strideWidth])),
                                         ("padding", json_object_new_string(padding == "same" ? "same" : "valid")),
                                         ("data_format", json_object_new_string("channels_first")),
                                         ("dilation_rate", jsonInts([1, 1])), ("groups", json_object_new_int64(1)),
                                         ("activation", json_object_new_string("linear")),
                                         ("use_bias", json_object_new_boolean(l.bias != nil ? 1 : 0))], weights: w, input: shape)
            case let l as Pool2D<T>:
                let win = l.window
                let average = l.mode == .average
                // Keras's "same" leaves padding out of an average, ours counts it: zeros, always.
                let padding = average && (win.padHeight > 0 || win.padWidth > 0) ? "zeros" : try paddingMode(win, allowZeroPad: false)
                if padding == "zeros" {
                    add("ZeroPadding2D", "zero_padding2d", [("padding", jsonArray([jsonInts([win.padHeight, win.padHeight]), jsonInts([win.padWidth, win.padWidth])])),
                                                            ("data_format", json_object_new_string("channels_first"))], input: shape)
                }
                if padding == "refuse" { throw unsupported(i, "max pooling with padding \(win.padHeight), \(win.padWidth) that Keras's \"same\" does not give") }
                add(average ? "AveragePooling2D" : "MaxPooling2D", average ? "average_pooling2d" : "max_pooling2d",
                    [("pool_size", jsonInts([win.kernelHeight, win.kernelWidth])), ("strides", jsonInts([win.strideHeight, win.strideWidth])),
                     ("padding", json_object_new_string(padding == "same" ? "same" : "valid")),
                     ("data_format", json_object_new_string("channels_first"))], input: shape)
            case let l as BatchNorm<T>:
                var w: [Weight] = []
                if let g = l.weight, let b = l.bias {
                    w = [Weight(role: "gamma", shape: [l.channels], values: values(g)), Weight(role: "beta", shape: [l.channels], values: values(b))]
                }
                w.append(Weight(role: "moving_mean", shape: [l.channels], values: values(l.runningMean)))
                w.append(Weight(role: "moving_variance", shape: [l.channels], values: values(l.runningVar)))
                add("BatchNormalization", "batch_normalization",
                    [("axis", json_object_new_int64(shape.count == 3 ? 1 : -1)), ("momentum", json_object_new_double(1 - l.momentum)),
                     ("epsilon", json_object_new_double(l.eps)), ("center", json_object_new_boolean(l.weight != nil ? 1 : 0)),
                     ("scale", json_object_new_boolean(l.weight != nil ? 1 : 0))], weights: w, input: shape)
            case let l as Dropout<T>:
                add("Dropout", "dropout", [("rate", json_object_new_double(l.rate))], input: shape)
            case let l as Reshape<T>:
                if l.type == "flatten" {
                    // channels_last: flattens in stored (C, H, W) order, as ours.
                    add("Flatten", "flatten", [("data_format", json_object_new_string("channels_last"))], input: shape)
                } else {
                    add("Reshape", "reshape", [("target_shape", jsonInts(l.outputShape))], input: shape)
                }
            case is Softmax<T>:
                guard shape.count == 1 else { throw unsupported(i, "softmax over images (Keras's is over the last axis, ours over all values)") }
                add("Softmax", "softmax", [("axis", json_object_new_int64(-1))], input: shape)
            default:
                switch layer.type {
                case "relu", "sigmoid", "tanh", "silu":
                    add("Activation", "activation", [("activation", json_object_new_string(layer.type))], input: shape)
                case "gelu":
                    guard try options.string("approximate") == "none" else { throw unsupported(i, "gelu with approximate \"tanh\" has no Keras activation name") }
                    add("Activation", "activation", [("activation", json_object_new_string("gelu"))], input: shape)
                case "leaky_relu":
                    add("LeakyReLU", "leaky_re_lu", [("negative_slope", json_object_new_double(try options.double("alpha")))], input: shape)
                case "elu":
                    add("ELU", "elu", [("alpha", json_object_new_double(try options.double("alpha")))], input: shape)
                case "softplus":
                    guard try options.double("beta") == 1, try options.double("threshold") >= 20 else {
                        throw unsupported(i, "softplus with beta or threshold other than 1 and 20 has no Keras equivalent")
                    }
                    add("Activation", "activation", [("activation", json_object_new_string("softplus"))], input: shape)
                default:
                    throw unsupported(i, "this layer type has no Keras equivalent here")
                }
            }
            shape = layer.outputShape
        }
    }

    /// "valid", "same" (Keras's same gives exactly this padding), "zeros" (a ZeroPadding2D
    /// first), or "refuse".
    private func paddingMode(_ w: Window2D, allowZeroPad: Bool) throws(DLError) -> String {
        if w.padHeight == 0 && w.padWidth == 0 { return "valid" }
        func same(_ n: Int, _ k: Int, _ s: Int, _ p: Int) -> Bool {
            let out = (n + s - 1) / s
            return max((out - 1) * s + k - n, 0) == 2 * p
        }
        if same(w.height, w.kernelHeight, w.strideHeight, w.padHeight) && same(w.width, w.kernelWidth, w.strideWidth, w.padWidth) { return "same" }
        return allowZeroPad ? "zeros" : "refuse"
    }

    /// The model's config: Keras 3's (config.json) or the legacy form (model_config).
    func config(legacy: Bool) throws(DLError) -> String {
        func wrap(_ cls: String, _ module: String, _ config: OpaquePointer?, build: [Int]? = nil) -> OpaquePointer? {
            var m: [(String, OpaquePointer?)] = []
            if !legacy { m.append(("module", json_object_new_string(module))) }
            m.append(("class_name", json_object_new_string(cls)))
            m.append(("config", config))
            if !legacy {
                m.append(("registered_name", nil))
                if let build { m.append(("build_config", jsonObject([("input_shape", jsonInts([nil] + build))]))) }
            }
            return jsonObject(m)
        }
        var list: [OpaquePointer?] = [wrap("InputLayer", "keras.layers", jsonObject([
            ("batch_shape", jsonInts([nil] + inputShape)), ("dtype", json_object_new_string("float32")),
            ("sparse", json_object_new_boolean(0)), ("name", json_object_new_string("input_layer"))]))]
        for layer in layers {
            var options: [(String, OpaquePointer?)] = [("name", json_object_new_string(layer.name)), ("trainable", json_object_new_boolean(1)),
                                                      ("dtype", json_object_new_string("float32"))]
            options += layer.options
            list.append(wrap(layer.cls, "keras.layers", jsonObject(options), build: layer.inputShape))
        }
        let modelConfig = jsonObject([("name", json_object_new_string(name)), ("trainable", json_object_new_boolean(1)),
                                      ("dtype", json_object_new_string("float32")), ("layers", jsonArray(list))])
        var top: [(String, OpaquePointer?)] = []
        if !legacy { top.append(("module", json_object_new_string("keras"))) }
        top.append(("class_name", json_object_new_string("Sequential")))
        top.append(("config", modelConfig))
        if !legacy {
            top.append(("registered_name", nil))
            top.append(("build_config", jsonObject([("input_shape", jsonInts([nil] + inputShape))])))
            top.append(("compile_config", try compileConfig()))
        }
        return try json(top)
    }

    /// Keras's compile settings for the spec's loss and optimizer, where Keras has them.
    private func compileConfig() throws(DLError) -> OpaquePointer? {
        let endsInSoftmax = layers.last?.cls == "Softmax"
        func lossObject(_ cls: String, _ name: String, _ extra: [(String, OpaquePointer?)]) -> OpaquePointer? {
            jsonObject([("module", json_object_new_string("keras.losses")), ("class_name", json_object_new_string(cls)),
                        ("config", jsonObject([("name", json_object_new_string(name)), ("reduction", json_object_new_string("sum_over_batch_size"))] + extra)),
                        ("registered_name", nil)])
        }
        let loss: OpaquePointer?
        switch spec.loss.type {
        case "cross_entropy":
            loss = lossObject("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy",
                              [("from_logits", json_object_new_boolean(endsInSoftmax ? 0 : 1)), ("ignore_class", nil)])
        case "binary_cross_entropy":
            loss = lossObject("BinaryCrossentropy", "binary_crossentropy", [("from_logits", json_object_new_boolean(1)),
                              ("label_smoothing", json_object_new_double(0)), ("axis", json_object_new_int64(-1))])
        case "huber":
            loss = lossObject("Huber", "huber_loss", [("delta", json_object_new_double((try? spec.loss.double("delta")) ?? 1))])
        default:
            loss = lossObject("MeanSquaredError", "mean_squared_error", [])
        }
        let o = spec.optimizer
        let lr = (try? o.double("lr")) ?? 0.001
        var config: [(String, OpaquePointer?)] = [("learning_rate", json_object_new_double(lr))]
        let cls: String
        switch o.type {
        case "sgd":
            cls = "SGD"
            config += [("momentum", json_object_new_double((try? o.double("momentum")) ?? 0)),
                       ("nesterov", json_object_new_boolean(((try? o.bool("nesterov")) ?? false) ? 1 : 0))]
        case "rmsprop":
            cls = "RMSprop"
            config += [("rho", json_object_new_double((try? o.double("rho")) ?? 0.9)), ("epsilon", json_object_new_double((try? o.double("eps")) ?? 1e-7))]
        case "adamw":
            cls = "AdamW"
            config += [("beta_1", json_object_new_double((try? o.double("beta1")) ?? 0.9)), ("beta_2", json_object_new_double((try? o.double("beta2")) ?? 0.999)),
                       ("epsilon", json_object_new_double((try? o.double("eps")) ?? 1e-7)),
                       ("weight_decay", json_object_new_double((try? o.double("weight_decay")) ?? 0.004))]
        default:
            cls = "Adam"
            config += [("beta_1", json_object_new_double((try? o.double("beta1")) ?? 0.9)), ("beta_2", json_object_new_double((try? o.double("beta2")) ?? 0.999)),
                       ("epsilon", json_object_new_double((try? o.double("eps")) ?? 1e-7))]
        }
        config.insert(("name", json_object_new_string(cls.lowercased())), at: 0)
        let optimizer = jsonObject([("module", json_object_new_string("keras.optimizers")), ("class_name", json_object_new_string(cls)),
                                    ("config", jsonObject(config)), ("registered_name", nil)])
        return jsonObject([("optimizer", optimizer), ("loss", loss), ("loss_weights", nil), ("metrics", nil),
                           ("weighted_metrics", nil), ("run_eagerly", json_object_new_boolean(0)),
                           ("steps_per_execution", json_object_new_int64(1)), ("jit_compile", json_object_new_boolean(0))])
    }
}

extension HDF5File {
    /// A one-dimensional attribute of fixed-length strings (h5py reads it as a list of bytes,
    /// as Keras's legacy loader expects for layer_names and weight_names).
    func setAttribute(_ object: String, _ name: String, strings: [String]) throws(DLError) {
        let width = max(strings.map { $0.utf8.count }.max() ?? 1, 1)
        let type = H5Tcopy(dlh5_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, width)
        H5Tset_strpad(type, H5T_STR_NULLPAD)
        var dims = [hsize_t(strings.count)]
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        let a = H5Acreate_by_name(id, object, name, type, space, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard a >= 0 else { throw fail("cannot create attribute \(object)@\(name)", kind: .io) }
        defer { H5Aclose(a) }
        var buffer = [UInt8](repeating: 0, count: max(width * strings.count, 1))
        for (i, s) in strings.enumerated() {
            for (j, byte) in s.utf8.enumerated() { buffer[i * width + j] = byte }
        }
        guard H5Awrite(a, type, buffer) >= 0 else { throw fail("cannot write attribute \(object)@\(name)", kind: .io) }
    }
}
