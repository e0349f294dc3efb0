import CJSONC
import CONNXProto
import CProtobufC
import Glibc

/// Reads an ONNX model that is a chain of the operators in docs/onnx.md into a trainable
/// model: the graph becomes a spec (JSON, read by `SpecParser` like any spec file), the
/// initializers its weights.
///
/// Everything read from the file is checked before use: protobuf-c's decoder is bounds-checked,
/// and every field taken from its result (types, dims, data lengths, attributes) is checked
/// here, element counts with overflow checks and against the file's size before anything is
/// allocated. Anything the chain form cannot express (branches, other operators, attributes
/// we do not implement, shapes that depend on the input) is refused naming the node and its
/// operator.
public enum ONNXImport {
    /// Largest file read (protobuf's 2 GiB message limit).
    public static let maxBytes = Int(Int32.max)
    /// Opsets of the default domain this reader knows the operators of.
    public static let opsets: ClosedRange<Int64> = 9...23
    /// Keys `options` (JSON) may set; they replace the spec's defaults verbatim.
    public static let optionKeys = ["name", "loss", "optimizer", "seed", "init", "dtype"]

    /// Loads the ONNX file at `path`. `options`: a JSON object with any of `optionKeys`.
    public static func load(path: String, options: String? = nil) throws(DLError) -> any AnyModel {
        let bytes = try read(path)
        return try decode(bytes, source: path, options: options)
    }

    /// The model that `bytes` (a serialized ONNX ModelProto) describes.
    public static func decode(_ bytes: [UInt8], source: String, options: String? = nil) throws(DLError) -> any AnyModel {
        guard !bytes.isEmpty else { throw DLError(.format, "\(source): the file is empty; expected an ONNX model") }
        let unpacked = bytes.withUnsafeBufferPointer { onnx__model_proto__unpack(nil, $0.count, $0.baseAddress) }
        guard let model = unpacked else {
            throw DLError(.format, "\(source): not an ONNX model, or a damaged one (protobuf-c could not decode its \(bytes.count) bytes)")
        }
        defer { onnx__model_proto__free_unpacked(model, nil) }
        var reader = Reader(source: source, fileSize: bytes.count)
        let chain = try reader.chain(model)
        let (json, weights) = try reader.spec(chain, model: model, options: options)
        let spec = try SpecParser.parse(json: json, source: source)
        let built = try makeModel(spec: spec)
        try reader.load(weights, into: built)
        return built
    }

    static func read(_ path: String) throws(DLError) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw DLError(.io, "\(path): cannot open the ONNX file: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var info = stat()
        guard fstat(fileno(file), &info) == 0 else {
            throw DLError(.io, "\(path): cannot read the ONNX file: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw DLError(.io, "\(path): not a regular file") }
        let size = Int(info.st_size)
        guard size <= maxBytes else {
            throw DLError(.format, "\(path): \(size) bytes, more than an ONNX model stored in one protobuf may hold (\(maxBytes))")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let n = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, size, file) }
        guard n == size else { throw DLError(.io, "\(path): cannot read the ONNX file (read \(n) of \(size) bytes)") }
        return bytes
    }
}

/// One layer of the chain: its spec entry and the values of its parameters and buffers,
/// in the order the layer declares them.
struct ImportedLayer {
    var type: String
    var options: [(String, ImportedValue)] = []
    var parameters: [[Float]] = []
    var buffers: [[Float]] = []
}

enum ImportedValue {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case ints([Int])
}

/// The spec JSON of an imported chain, written once for every importer (ONNX, Keras): the
/// importer adds its loss and optimizer, then `finish` applies the saved and the caller's
/// settings and returns the text.
enum ImportedSpec {
    static func add(_ object: OpaquePointer?, _ key: String, _ value: OpaquePointer?) { json_object_object_add(object, key, value) }

    static func ints(_ v: [Int]) -> OpaquePointer? {
        let a = json_object_new_array()
        for x in v { json_object_array_add(a, json_object_new_int64(Int64(x))) }
        return a
    }

    /// A new root object (the caller puts it) holding the format version, name, input shape,
    /// layers and preprocessing.
    static func root(name: String, inputShape: [Int], layers: [ImportedLayer], preprocessing: Preprocessing) -> OpaquePointer? {
        let root = json_object_new_object()
        add(root, "format_version", json_object_new_int(Int32(ModelSpec.formatVersion)))
        add(root, "name", json_object_new_string(name))
        let input = json_object_new_object()
        add(input, "shape", ints(inputShape))
        add(root, "input", input)
        let list = json_object_new_array()
        for layer in layers {
            let object = json_object_new_object()
            add(object, "type", json_object_new_string(layer.type))
            for (key, value) in layer.options {
                switch value {
                case .int(let v): add(object, key, json_object_new_int64(Int64(v)))
                case .double(let v): add(object, key, json_object_new_double(v))
                case .bool(let v): add(object, key, json_object_new_boolean(v ? 1 : 0))
                case .string(let v): add(object, key, json_object_new_string(v))
                case .ints(let v): add(object, key, ints(v))
                }
            }
            json_object_array_add(list, object)
        }
        add(root, "layers", list)
        if !preprocessing.isIdentity {
            let p = json_object_new_object()
            add(p, "scale", json_object_new_double(preprocessing.scale))
            add(p, "mean", json_object_new_double(preprocessing.mean))
            add(p, "std", json_object_new_double(preprocessing.std))
            add(root, "preprocessing", p)
        }
        return root
    }

    /// Copies the members `keys` of `from` into `to` (new references).
    static func copy(_ keys: [String], from: OpaquePointer?, to: OpaquePointer?) {
        for key in keys {
            var value: OpaquePointer? = nil
            if json_object_object_get_ex(from, key, &value) != 0 { json_object_object_add(to, key, json_object_get(value)) }
        }
    }

    /// `root` with the settings `keys` of a spec the file carries (`saved`, ignored when
    /// damaged) and then of the caller's `options` (refused with an unknown key), as text.
    static func finish(_ root: OpaquePointer?, keys: [String], saved: String?, savedSource: String,
                       options: String?) throws(DLError) -> String {
        if let saved, let spec = try? SpecParser.tokenize(Array(saved.utf8), savedSource) {
            copy(keys, from: spec, to: root)
            json_object_put(spec)
        }
        if let options {
            let given = try SpecParser.tokenize(Array(options.utf8), "options_json")
            defer { json_object_put(given) }
            for member in SpecReader.members(given) where !keys.contains(member.key) {
                throw DLError(.invalidArgument, "options_json: unknown key \"\(member.key)\"; the keys are \(SpecReader.quoted(keys))")
            }
            copy(keys, from: given, to: root)
        }
        guard let text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN) else {
            throw DLError(.noMemory, "out of memory writing the imported model's spec")
        }
        return String(cString: text)
    }
}

/// The graph walked as a chain.
struct Chain {
    var inputShape: [Int]
    var outputShape: [Int] = []
    var layers: [ImportedLayer] = []
    var preprocessing = Preprocessing()
}

typealias NodePointer = UnsafeMutablePointer<Onnx__NodeProto>
typealias TensorPointer = UnsafeMutablePointer<Onnx__TensorProto>

struct Reader {
    let source: String
    /// Bytes in the file: no tensor may claim more values than it could hold.
    let fileSize: Int
    /// Initializers and Constant nodes' values, by name.
    var constants: [String: TensorPointer] = [:]

    init(source: String, fileSize: Int) {
        self.source = source
        self.fileSize = fileSize
    }

    func error(_ message: String) -> DLError { DLError(.format, "\(source): \(message)") }
    func unsupported(_ message: String) -> DLError { DLError(.unsupported, "\(source): \(message)") }

    // MARK: The graph as a chain

    mutating func chain(_ model: UnsafeMutablePointer<Onnx__ModelProto>) throws(DLError) -> Chain {
        guard let graph = model.pointee.graph else { throw error("the model has no graph") }
        // Opsets: the default domain, in the range whose operators we know.
        var opset: Int64? = nil
        for i in 0..<model.pointee.n_opset_import {
            guard let id = model.pointee.opset_import?[i] else { continue }
            let domain = text(id.pointee.domain)
            if domain == "" || domain == "ai.onnx" { opset = id.pointee.has_version != 0 ? id.pointee.version : nil }
        }
        guard let opset else { throw unsupported("the model imports no opset of the default ONNX domain") }
        guard ONNXImport.opsets.contains(opset) else {
            throw unsupported("opset \(opset) of the default domain; this reader knows opsets \(ONNXImport.opsets.lowerBound) to \(ONNXImport.opsets.upperBound)")
        }
        let g = graph.pointee
        for i in 0..<g.n_initializer {
            guard let t = g.initializer?[i] else { continue }
            constants[text(t.pointee.name)] = t
        }
        if g.n_sparse_initializer > 0 { throw unsupported("sparse initializers are not supported") }

        // One input that is not an initializer (older exporters list initializers as inputs too).
        var inputs: [UnsafeMutablePointer<Onnx__ValueInfoProto>] = []
        for i in 0..<g.n_input {
            guard let v = g.input?[i] else { continue }
            if constants[text(v.pointee.name)] == nil { inputs.append(v) }
        }
        guard inputs.count == 1 else {
            throw unsupported("the graph has \(inputs.count) inputs besides its initializers; a chain has exactly one")
        }
        guard g.n_output == 1, let outputInfo = g.output?[0] else {
            throw unsupported("the graph has \(g.n_output) outputs; a chain has exactly one")
        }
        let inputName = text(inputs[0].pointee.name)
        let outputName = text(outputInfo.pointee.name)
        var chain = Chain(inputShape: try sampleShape(inputs[0]))

        var nodes: [NodePointer] = []
        for i in 0..<g.n_node {
            guard let n = g.node?[i] else { continue }
            let domain = text(n.pointee.domain)
            guard domain == "" || domain == "ai.onnx" else {
                throw unsupported("node \(describe(n)) is from the operator domain \"\(domain)\"; only the default ONNX domain is read")
            }
            if text(n.pointee.op_type) == "Constant" {
                try constant(n)
            } else {
                nodes.append(n)
            }
        }

        var current = inputName
        var shape = chain.inputShape
        /// A Transpose to (H, W, C) seen, and the (C, H, W) shape before it.
        var channelsLast: (ChannelsLast, [Int])? = nil
        // Values produced but never to be read (Dropout's mask, MaxPool's indices).
        var unused: Set<String> = []
        var k = 0
        while k < nodes.count {
            let n = nodes[k]
            let op = text(n.pointee.op_type)
            let (inputsOfNode, outputsOfNode) = (strings(n.pointee.input, n.pointee.n_input), strings(n.pointee.output, n.pointee.n_output))
            for name in inputsOfNode where unused.contains(name) {
                throw unsupported("node \(describe(n)) reads \"\(name)\", an extra output of an earlier node; only chains are read")
            }
            guard let output = outputsOfNode.first, !output.isEmpty else { throw error("node \(describe(n)) has no output") }
            let extraOutputs = outputsOfNode.dropFirst().filter { !$0.isEmpty }
            if !extraOutputs.isEmpty && !["Dropout", "MaxPool", "BatchNormalization"].contains(op) {
                throw unsupported("node \(describe(n)) has \(outputsOfNode.count) outputs; a chain's nodes have one")
            }
            unused.formUnion(extraOutputs)
            var next = NodeReader(node: n, op: op, inputs: inputsOfNode, reader: self)

            // The data input: the previous node's output. Mul and Add may take it second.
            let dataFirst = inputsOfNode.first == current
            let dataSecond = (op == "Mul" || op == "Add") && inputsOfNode.count == 2 && inputsOfNode[1] == current
            guard dataFirst || dataSecond else {
                throw unsupported("node \(describe(n)) does not read the output of the node before it (\"\(current)\"); only chains of nodes are read (no branches)")
            }
            if dataSecond { next.inputs.swapAt(0, 1) }
            // x * sigmoid(x): SiLU, as torch.onnx.export writes it. The Sigmoid before this
            // Mul read x; this Mul reads x and the Sigmoid's output (the current value).
            let isSiLU = op == "Mul" && k > 0 && chain.layers.last?.type == "sigmoid" && next.inputs.count == 2
                && sigmoidInput(nodes[k - 1]) == next.inputs[1] && !next.inputs[1].isEmpty
            for name in next.inputs.dropFirst() where !isSiLU && !name.isEmpty && constants[name] == nil {
                throw unsupported("node \(describe(n)) reads \"\(name)\", which is neither an initializer nor a constant; only chains with constant weights are read")
            }

            // After a Transpose to channels-last (Keras flattens in H, W, C order), only a
            // flatten and then the linear layer whose columns it reorders may follow.
            if let (stage, _) = channelsLast {
                let allowed = stage == .transposed ? ["Identity", "Dropout", "Flatten", "Reshape"] : ["Identity", "Dropout", "Gemm", "MatMul"]
                guard allowed.contains(op) else {
                    throw unsupported("node \(describe(n)) follows a Transpose to channels-last; only a Flatten (or Reshape to flat) and then Gemm or MatMul may follow it")
                }
            }
            var consumed = 1
            switch op {
            case "Transpose":
                try next.allow(["perm"])
                // No perm reverses the axes.
                let perm = try next.ints("perm", count: shape.count + 1, in: 0...3) ?? Array((0...shape.count).reversed())
                if perm == [0, 2, 3, 1] && shape.count == 3 && channelsLast == nil {
                    channelsLast = (.transposed, shape)
                    shape = [shape[1], shape[2], shape[0]]
                } else if chain.layers.isEmpty {
                    throw unsupported("node \(describe(n)) (Transpose) of the input: channels-last images are not read; export with the input in NCHW (tf2onnx: --inputs-as-nchw)")
                } else {
                    throw unsupported("node \(describe(n)) (Transpose) with perm \(perm.map { "\($0)" }.joined(separator: ", ")): only the channels-last transpose before a flatten (0, 2, 3, 1) is read")
                }
            case "Identity":
                try next.allow([])
            case "Dropout":
                try next.allow(["seed", "ratio"])
            case "Mul", "Add", "Sub", "Div":
                if !isSiLU, chain.layers.isEmpty, let value = try next.scalarOperand() {
                    try preprocessing(&chain.preprocessing, op, value, n)
                } else if isSiLU {
                    try next.allow([])
                    chain.layers[chain.layers.count - 1] = ImportedLayer(type: "silu")
                } else {
                    throw unsupported("node \(describe(n)) (\(op)) is read only as the input's scaling before any layer, with a scalar constant, or as x * Sigmoid(x) (SiLU)")
                }
            case "Gemm":
                chain.layers.append(try next.gemm(&shape))
                try reorderColumns(&chain, &channelsLast)
            case "MatMul":
                // MatMul then Add of a constant vector: a linear layer with bias, as Keras/tf2onnx write it.
                var bias: [Float]? = nil
                if k + 1 < nodes.count, text(nodes[k + 1].pointee.op_type) == "Add" {
                    let add = nodes[k + 1]
                    let addInputs = strings(add.pointee.input, add.pointee.n_input)
                    if addInputs.count == 2, addInputs.contains(output) {
                        let other = addInputs[0] == output ? addInputs[1] : addInputs[0]
                        if let t = constants[other] {
                            let addReader = NodeReader(node: add, op: "Add", inputs: addInputs, reader: self)
                            try addReader.allow([])
                            bias = try floats(t, "bias of node \(describe(add))")
                            consumed = 2
                        }
                    }
                }
                chain.layers.append(try next.matmul(&shape, bias: bias))
                try reorderColumns(&chain, &channelsLast)
            case "Conv":
                chain.layers.append(try next.conv(&shape))
            case "MaxPool", "AveragePool":
                chain.layers.append(try next.pool(&shape, average: op == "AveragePool"))
            case "GlobalAveragePool":
                try next.allow([])
                guard shape.count == 3 else { throw unsupported("node \(describe(n)) (GlobalAveragePool) needs images [C, H, W], but its input is \(shape)") }
                chain.layers.append(ImportedLayer(type: "avg_pool2d", options: [("kernel_size", .ints([shape[1], shape[2]])), ("stride", .ints([shape[1], shape[2]]))]))
                shape = [shape[0], 1, 1]
            case "BatchNormalization":
                chain.layers.append(try next.batchNorm(shape, extraOutputs: extraOutputs.count))
            case "Relu", "Sigmoid", "Tanh", "Softplus":
                try next.allow([])
                chain.layers.append(ImportedLayer(type: ["Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus"][op] ?? ""))
            case "LeakyRelu":
                try next.allow(["alpha"])
                chain.layers.append(ImportedLayer(type: "leaky_relu", options: [("alpha", .double(Double(try next.float("alpha") ?? 0.01)))]))
            case "Elu":
                try next.allow(["alpha"])
                chain.layers.append(ImportedLayer(type: "elu", options: [("alpha", .double(Double(try next.float("alpha") ?? 1)))]))
            case "Gelu":
                try next.allow(["approximate"])
                let approximate = try next.string("approximate") ?? "none"
                guard approximate == "none" || approximate == "tanh" else {
                    throw unsupported("node \(describe(n)) (Gelu): approximate \"\(approximate)\"; expected \"none\" or \"tanh\"")
                }
                chain.layers.append(ImportedLayer(type: "gelu", options: [("approximate", .string(approximate))]))
            case "Softmax":
                try next.allow(["axis"])
                let axis = try next.int("axis") ?? (opset >= 13 ? -1 : 1)
                // Ours is over all of a sample's values: ONNX's axis must be the only one left.
                let rank = shape.count + 1
                guard shape.count == 1 ? (axis == 1 || axis == -1) : (opset < 13 && axis == 1) else {
                    throw unsupported("node \(describe(n)) (Softmax): axis \(axis) over an input of rank \(rank); only a softmax over each sample's values is read")
                }
                chain.layers.append(ImportedLayer(type: "softmax"))
            case "Flatten":
                try next.allow(["axis"])
                let axis = try next.int("axis") ?? 1
                guard axis == 1 || (axis == -1 && shape.count == 1) else {
                    throw unsupported("node \(describe(n)) (Flatten): axis \(axis); only axis 1 (keep the batch) is read")
                }
                if shape.count > 1 {
                    chain.layers.append(ImportedLayer(type: "flatten"))
                    shape = [try checkedCount(shape, "Flatten output")]
                }
                if let (_, chw) = channelsLast { channelsLast = (.flattened, chw) }
            case "Reshape":
                try next.reshape(&shape, into: &chain.layers)
                if let (_, chw) = channelsLast {
                    guard shape.count == 1 else {
                        throw unsupported("node \(describe(n)) (Reshape) after a Transpose to channels-last must flatten")
                    }
                    channelsLast = (.flattened, chw)
                }
            default:
                throw unsupported("node \(describe(n)) has the operator \(op), which this reader does not import (see docs/onnx.md for those it does)")
            }
            // Pads and reshapes from the file may describe outputs beyond the tensor limit.
            _ = try checkedCount(shape, "node \(describe(n)): output of one sample, \(shape)")
            current = consumed == 2 ? (strings(nodes[k + 1].pointee.output, nodes[k + 1].pointee.n_output).first ?? "") : output
            k += consumed
        }
        if channelsLast != nil {
            throw unsupported("the graph ends after a Transpose to channels-last; only a flatten and a linear layer may follow one")
        }
        guard current == outputName else {
            throw unsupported("the graph's output \"\(outputName)\" is not the end of the node chain (\"\(current)\")")
        }
        guard !chain.layers.isEmpty else { throw unsupported("the graph has no layer this library can train (only identity nodes)") }
        chain.outputShape = shape
        return chain
    }

    enum ChannelsLast { case transposed, flattened }

    /// The linear layer just read takes the features in (H, W, C) order, as Keras flattens
    /// after a Transpose to channels-last; ours arrive in (C, H, W) order, so its weight's
    /// columns are reordered and the Transpose needs no layer.
    private func reorderColumns(_ chain: inout Chain, _ channelsLast: inout (ChannelsLast, [Int])?) throws(DLError) {
        guard let (stage, chw) = channelsLast else { return }
        guard stage == .flattened, chw.count == 3, var layer = chain.layers.last, let weight = layer.parameters.first else {
            throw unsupported("a Transpose to channels-last must be followed by a flatten before the linear layer")
        }
        guard let reordered = reorderChannelsLastColumns(weight, chw: chw) else {
            throw DLError(.internal, "\(source): channels-last reorder of a weight of \(weight.count) values")
        }
        layer.parameters[0] = reordered
        chain.layers[chain.layers.count - 1] = layer
        channelsLast = nil
    }

    /// The input of a Sigmoid node, for the SiLU pattern.
    private func sigmoidInput(_ n: NodePointer) -> String? {
        guard text(n.pointee.op_type) == "Sigmoid" else { return nil }
        return strings(n.pointee.input, n.pointee.n_input).first
    }

    /// Folds a scalar Mul/Sub/Add/Div at the front into the spec's preprocessing,
    /// x' = (x * scale - mean) / std, in that order.
    private func preprocessing(_ p: inout Preprocessing, _ op: String, _ value: Double, _ n: NodePointer) throws(DLError) {
        let isDefault = (scale: p.scale == 1, mean: p.mean == 0, std: p.std == 1)
        switch op {
        case "Mul" where isDefault.mean && isDefault.std && isDefault.scale && value > 0:
            p.scale = value
        case "Sub" where isDefault.mean && isDefault.std:
            p.mean = value
        case "Add" where isDefault.mean && isDefault.std:
            p.mean = -value
        case "Div" where isDefault.std && value > 0:
            p.std = value
        default:
            throw unsupported("node \(describe(n)) (\(op) by \(value)): the input's scaling is read as Mul by a positive number, then Sub or Add, then Div by a positive number, each at most once")
        }
    }

    /// One sample's shape from the graph input's type: float32, rank 2 to 4, every
    /// dimension but the first (the batch) a fixed positive size.
    private func sampleShape(_ info: UnsafeMutablePointer<Onnx__ValueInfoProto>) throws(DLError) -> [Int] {
        let name = text(info.pointee.name)
        guard let type = info.pointee.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
              let tensor = type.pointee.tensor_type else {
            throw unsupported("the graph input \"\(name)\" is not a tensor")
        }
        guard tensor.pointee.elem_type == Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue) else {
            throw unsupported("the graph input \"\(name)\" has element type \(tensor.pointee.elem_type); only float32 (1) is read")
        }
        guard let shape = tensor.pointee.shape else {
            throw unsupported("the graph input \"\(name)\" has no shape; one sample's shape must be fixed")
        }
        let rank = shape.pointee.n_dim
        guard (2...4).contains(rank) else {
            throw unsupported("the graph input \"\(name)\" has rank \(rank); expected (batch, features) or (batch, channels, height, width)")
        }
        var dims: [Int] = []
        for i in 1..<rank {
            guard let d = shape.pointee.dim?[i], d.pointee.value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE,
                  d.pointee.dim_value > 0, d.pointee.dim_value <= Int64(Limits.maxTensorElements) else {
                throw unsupported("the graph input \"\(name)\": dimension \(i) is not a fixed positive size; only the batch dimension may vary")
            }
            dims.append(Int(d.pointee.dim_value))
        }
        _ = try checkedCount(dims, "the graph input \"\(name)\"")
        return dims
    }

    /// Records a Constant node's value (a tensor, or one of the scalar/list forms).
    private mutating func constant(_ n: NodePointer) throws(DLError) {
        let outputs = strings(n.pointee.output, n.pointee.n_output)
        guard outputs.count == 1, n.pointee.n_attribute == 1, let a = n.pointee.attribute?[0] else {
            throw unsupported("node \(describe(n)) (Constant) must have one output and one attribute")
        }
        let name = text(a.pointee.name)
        guard name == "value", let t = a.pointee.t else {
            throw unsupported("node \(describe(n)) (Constant): only the \"value\" tensor form is read, not \"\(name)\"")
        }
        constants[outputs[0]] = t
    }

    // MARK: Tensors

    /// The element count of `t` from its dims, checked against overflow, the tensor limit and
    /// the file's size (`bytesPerValue` each).
    func count(_ t: TensorPointer, _ what: String, bytesPerValue: Int) throws(DLError) -> (dims: [Int], count: Int) {
        if t.pointee.has_data_location != 0 && t.pointee.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            throw unsupported("\(what): the values are stored in an external file, which this reader does not follow")
        }
        var dims: [Int] = []
        for i in 0..<t.pointee.n_dims {
            guard let d = t.pointee.dims?[i], d >= 0, d <= Int64(Limits.maxTensorElements) else {
                throw error("\(what): dimension \(i) is \(t.pointee.dims?[i] ?? -1); expected a size from 0 to \(Limits.maxTensorElements)")
            }
            dims.append(Int(d))
        }
        let n = try checkedCount(dims, what)
        guard n <= fileSize / bytesPerValue else {
            throw error("\(what): dims \(dims) claim \(n) values, more than the \(fileSize)-byte file holds")
        }
        return (dims, n)
    }

    /// A float tensor's values (float32, or float64 converted), after checking that the data
    /// holds exactly as many values as the dims say.
    func floats(_ t: TensorPointer, _ what: String, dims expected: [Int]? = nil) throws(DLError) -> [Float] {
        let type = t.pointee.data_type
        let isDouble = type == Int32(ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE.rawValue)
        guard type == Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue) || isDouble else {
            throw unsupported("\(what): element type \(type); weights must be float32 (1) or float64 (11)")
        }
        let (dims, n) = try count(t, what, bytesPerValue: isDouble ? 8 : 4)
        if let expected, dims != expected {
            // A vector may come as (1, n) or (n, 1) from some exporters.
            guard dims.filter({ $0 != 1 }) == expected.filter({ $0 != 1 }), n == expected.reduce(1, *) else {
                throw error("\(what): dims \(dims); expected \(expected)")
            }
        }
        let raw = t.pointee.raw_data
        if t.pointee.has_raw_data != 0 && raw.len > 0 {
            guard raw.len == n * (isDouble ? 8 : 4), let data = raw.data else {
                throw error("\(what): raw_data holds \(raw.len) bytes, but dims \(dims) need \(n * (isDouble ? 8 : 4))")
            }
            // raw_data is little-endian and may be unaligned: copy byte-wise.
            if isDouble {
                var values = [Double](repeating: 0, count: n)
                values.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n * 8)) }
                return values.map { Float($0) }
            }
            var values = [Float](repeating: 0, count: n)
            values.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n * 4)) }
            return values
        }
        if isDouble {
            guard t.pointee.n_double_data == n, n == 0 || t.pointee.double_data != nil else {
                throw error("\(what): double_data holds \(t.pointee.n_double_data) values, but dims \(dims) need \(n)")
            }
            return (0..<n).map { Float(t.pointee.double_data?[$0] ?? 0) }
        }
        guard t.pointee.n_float_data == n, n == 0 || t.pointee.float_data != nil else {
            throw error("\(what): float_data holds \(t.pointee.n_float_data) values, but dims \(dims) need \(n)")
        }
        return (0..<n).map { t.pointee.float_data?[$0] ?? 0 }
    }

    /// An int64 tensor's values (Reshape's shape).
    func int64s(_ t: TensorPointer, _ what: String) throws(DLError) -> [Int64] {
        guard t.pointee.data_type == Int32(ONNX__TENSOR_PROTO__DATA_TYPE__INT64.rawValue) else {
            throw unsupported("\(what): element type \(t.pointee.data_type); expected int64 (7)")
        }
        let (dims, n) = try count(t, what, bytesPerValue: 8)
        let raw = t.pointee.raw_data
        if t.pointee.has_raw_data != 0 && raw.len > 0 {
            guard raw.len == n * 8, let data = raw.data else {
                throw error("\(what): raw_data holds \(raw.len) bytes, but dims \(dims) need \(n * 8)")
            }
            var values = [Int64](repeating: 0, count: n)
            values.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: data, count: n * 8)) }
            return values
        }
        guard t.pointee.n_int64_data == n, n == 0 || t.pointee.int64_data != nil else {
            throw error("\(what): int64_data holds \(t.pointee.n_int64_data) values, but dims \(dims) need \(n)")
        }
        return (0..<n).map { t.pointee.int64_data?[$0] ?? 0 }
    }

    // MARK: The spec and the weights

    /// The spec's JSON for `chain`, and the layers' weights in order.
    func spec(_ chain: Chain, model: UnsafeMutablePointer<Onnx__ModelProto>, options: String?) throws(DLError) -> (String, [ImportedLayer]) {
        let graphName = text(model.pointee.graph?.pointee.name)
        let root = ImportedSpec.root(name: graphName.isEmpty ? "onnx_import" : graphName, inputShape: chain.inputShape,
                                     layers: chain.layers, preprocessing: chain.preprocessing)
        defer { json_object_put(root) }
        // Defaults: a classifier's loss for several outputs, mean squared error for one.
        let outputs = chain.outputShape.reduce(1, *)
        ImportedSpec.add(root, "loss", json_object_new_string(outputs == 1 || chain.outputShape.count != 1 ? "mse" : "cross_entropy"))
        let optimizer = json_object_new_object()
        ImportedSpec.add(optimizer, "type", json_object_new_string("adam"))
        ImportedSpec.add(optimizer, "lr", json_object_new_double(0.001))
        ImportedSpec.add(root, "optimizer", optimizer)

        // A model this library wrote carries its spec: its loss, optimizer and other settings
        // come back. A damaged copy is ignored (the graph itself was read).
        var saved: String? = nil
        for i in 0..<model.pointee.n_metadata_props {
            guard let entry = model.pointee.metadata_props?[i], text(entry.pointee.key) == "deeplearning.spec" else { continue }
            saved = text(entry.pointee.value)
        }
        let json = try ImportedSpec.finish(root, keys: ONNXImport.optionKeys, saved: saved,
                                           savedSource: "\(source): metadata deeplearning.spec", options: options)
        return (json, chain.layers)
    }

    func load(_ layers: [ImportedLayer], into model: any AnyModel) throws(DLError) {
        var p = 0, b = 0
        for layer in layers {
            for values in layer.parameters {
                try values.withUnsafeBufferPointer { (v) throws(DLError) in
                    guard let base = v.baseAddress else { return }
                    try model.writeParameter(p, from: base, count: v.count)
                }
                p += 1
            }
            for values in layer.buffers {
                try values.withUnsafeBufferPointer { (v) throws(DLError) in
                    guard let base = v.baseAddress else { return }
                    try model.writeBuffer(b, from: base, count: v.count)
                }
                b += 1
            }
        }
        guard p == model.parameterNames.count, b == model.bufferNames.count else {
            throw DLError(.internal, "\(source): imported \(p) parameters and \(b) buffers for a model with \(model.parameterNames.count) and \(model.bufferNames.count)")
        }
    }

    // MARK: Text

    func text(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

    func strings(_ list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ n: Int) -> [String] {
        (0..<n).map { text(list?[$0]) }
    }

    /// "\"name\" (Op)", or "#k (Op)" for a node without a name.
    func describe(_ n: NodePointer) -> String {
        let name = text(n.pointee.name)
        let op = text(n.pointee.op_type)
        return name.isEmpty ? "of type \(op) (unnamed)" : "\"\(name)\" (\(op))"
    }
}

/// One node's attributes and constant inputs, read for the layer it becomes.
struct NodeReader {
    let node: NodePointer
    let op: String
    /// The node's inputs, the data input first.
    var inputs: [String]
    let reader: Reader

    init(node: NodePointer, op: String, inputs: [String], reader: Reader) {
        self.node = node
        self.op = op
        self.inputs = inputs
        self.reader = reader
    }

    var me: String { "node \(reader.describe(node))" }

    func unsupported(_ message: String) -> DLError { reader.unsupported("\(me): \(message)") }

    /// Refuses attributes other than `names` (and repeated ones).
    func allow(_ names: [String]) throws(DLError) {
        var seen: Set<String> = []
        for i in 0..<node.pointee.n_attribute {
            guard let a = node.pointee.attribute?[i] else { continue }
            let name = reader.text(a.pointee.name)
            guard names.contains(name) else {
                throw unsupported("the attribute \"\(name)\" is not supported (this reader knows \(names.isEmpty ? "none" : SpecReader.quoted(names)))")
            }
            guard seen.insert(name).inserted else { throw unsupported("the attribute \"\(name)\" is given twice") }
        }
    }

    private func attribute(_ name: String, _ type: Onnx__AttributeProto__AttributeType, _ typeName: String) throws(DLError) -> UnsafeMutablePointer<Onnx__AttributeProto>? {
        for i in 0..<node.pointee.n_attribute {
            guard let a = node.pointee.attribute?[i], reader.text(a.pointee.name) == name else { continue }
            // Old files may leave `type` unset; then the field that is present decides.
            if a.pointee.has_type != 0 && a.pointee.type != type {
                throw unsupported("the attribute \"\(name)\" has type \(a.pointee.type.rawValue); expected \(typeName)")
            }
            return a
        }
        return nil
    }

    func int(_ name: String) throws(DLError) -> Int? {
        guard let a = try attribute(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "an integer") else { return nil }
        guard let v = Int(exactly: a.pointee.i) else { throw unsupported("the attribute \"\(name)\" is out of range") }
        return v
    }

    func float(_ name: String) throws(DLError) -> Float? {
        guard let a = try attribute(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "a float") else { return nil }
        guard a.pointee.f.isFinite else { throw unsupported("the attribute \"\(name)\" is \(a.pointee.f)") }
        return a.pointee.f
    }

    func string(_ name: String) throws(DLError) -> String? {
        guard let a = try attribute(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "a string") else { return nil }
        let s = a.pointee.s
        guard s.len > 0, let data = s.data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: data, count: s.len), as: UTF8.self)
    }

    /// A list of integers, each in `range`, of `count` entries when given.
    func ints(_ name: String, count: Int, in range: ClosedRange<Int> = 0...Limits.maxTensorElements) throws(DLError) -> [Int]? {
        guard let a = try attribute(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "a list of integers") else { return nil }
        guard a.pointee.n_ints == count else {
            throw unsupported("the attribute \"\(name)\" has \(a.pointee.n_ints) entries; expected \(count)")
        }
        var values: [Int] = []
        for i in 0..<count {
            guard let v = a.pointee.ints?[i], let n = Int(exactly: v), range.contains(n) else {
                throw unsupported("the attribute \"\(name)\" has \(a.pointee.ints?[i] ?? 0) at \(i); expected \(range.lowerBound) to \(range.upperBound)")
            }
            values.append(n)
        }
        return values
    }

    /// The constant input `index` (nil when absent or the empty name).
    func constant(_ index: Int) -> TensorPointer? {
        guard index < inputs.count, !inputs[index].isEmpty else { return nil }
        return reader.constants[inputs[index]]
    }

    /// The second operand of Mul/Add/Sub/Div when it is a constant with one value.
    func scalarOperand() throws(DLError) -> Double? {
        try allow([])
        guard inputs.count == 2, let t = constant(1) else { return nil }
        let values = try reader.floats(t, "\(me): operand")
        guard values.count == 1, values[0].isFinite else { return nil }
        return Double(values[0])
    }

    private func requireFlat(_ shape: [Int]) throws(DLError) -> Int {
        guard shape.count == 1 else {
            throw unsupported("needs a flat input (batch, features), but one sample has shape \(shape); put a Flatten before it")
        }
        return shape[0]
    }

    // MARK: Layers

    /// Gemm(x, B, C): y = alpha x op(B) + beta C, with op(B) = B^T when transB.
    func gemm(_ shape: inout [Int]) throws(DLError) -> ImportedLayer {
        try allow(["alpha", "beta", "transA", "transB"])
        let inFeatures = try requireFlat(shape)
        guard try int("transA") ?? 0 == 0 else { throw unsupported("transA = 1 is not supported (the input must be (batch, features))") }
        let transB = try int("transB") ?? 0
        guard inputs.count >= 2, inputs.count <= 3, let b = constant(1) else {
            throw unsupported("expected inputs (x, weight[, bias]) with constant weight and bias")
        }
        let (dims, _) = try reader.count(b, "\(me): weight", bytesPerValue: 4)
        guard dims.count == 2 else { throw unsupported("the weight has dims \(dims); expected a matrix") }
        let (rows, cols) = (dims[0], dims[1])
        let outFeatures = transB != 0 ? rows : cols
        guard (transB != 0 ? cols : rows) == inFeatures else {
            throw unsupported("the weight has dims \(dims) (transB = \(transB)), which does not fit \(inFeatures) input features")
        }
        var weight = try reader.floats(b, "\(me): weight", dims: dims)
        if transB == 0 { weight = transpose(weight, rows: rows, cols: cols) }
        let alpha = try float("alpha") ?? 1, beta = try float("beta") ?? 1
        if alpha != 1 { weight = weight.map { $0 * alpha } }
        var layer = ImportedLayer(type: "linear", options: [("units", .int(outFeatures))], parameters: [weight])
        if inputs.count == 3, !inputs[2].isEmpty {
            guard let c = constant(2) else { throw unsupported("the bias is not a constant") }
            var bias = try reader.floats(c, "\(me): bias")
            if bias.count == 1 && outFeatures > 1 { bias = [Float](repeating: bias[0], count: outFeatures) }
            guard bias.count == outFeatures else { throw unsupported("the bias has \(bias.count) values; expected \(outFeatures)") }
            if beta != 1 { bias = bias.map { $0 * beta } }
            layer.parameters.append(bias)
        } else {
            layer.options.append(("bias", .bool(false)))
        }
        shape = [outFeatures]
        return layer
    }

    /// MatMul(x, W) with W (in, out), and the bias of the Add after it when there is one.
    func matmul(_ shape: inout [Int], bias: [Float]?) throws(DLError) -> ImportedLayer {
        try allow([])
        let inFeatures = try requireFlat(shape)
        guard inputs.count == 2, let w = constant(1) else { throw unsupported("expected inputs (x, weight) with a constant weight") }
        let (dims, _) = try reader.count(w, "\(me): weight", bytesPerValue: 4)
        guard dims.count == 2, dims[0] == inFeatures else {
            throw unsupported("the weight has dims \(dims); expected (\(inFeatures), outputs)")
        }
        let outFeatures = dims[1]
        let weight = transpose(try reader.floats(w, "\(me): weight", dims: dims), rows: inFeatures, cols: outFeatures)
        var layer = ImportedLayer(type: "linear", options: [("units", .int(outFeatures))], parameters: [weight])
        if var bias {
            if bias.count == 1 && outFeatures > 1 { bias = [Float](repeating: bias[0], count: outFeatures) }
            guard bias.count == outFeatures else { throw unsupported("the Add after it has \(bias.count) values; expected \(outFeatures)") }
            layer.parameters.append(bias)
        } else {
            layer.options.append(("bias", .bool(false)))
        }
        shape = [outFeatures]
        return layer
    }

    /// The (height, width) padding of a Conv or pooling node: explicit symmetric pads, or an
    /// auto_pad that comes to them.
    private func padding(kernel: [Int], strides: [Int], shape: [Int]) throws(DLError) -> [Int] {
        let autoPad = try string("auto_pad") ?? "NOTSET"
        switch autoPad {
        case "NOTSET":
            let pads = try ints("pads", count: 4) ?? [0, 0, 0, 0]
            guard pads[0] == pads[2], pads[1] == pads[3] else {
                throw unsupported("pads \(pads) are not the same at both ends of an axis; only symmetric padding is supported")
            }
            return [pads[0], pads[1]]
        case "VALID":
            return [0, 0]
        case "SAME_UPPER", "SAME_LOWER":
            // Symmetric when the stride is 1 and the kernel odd: (k - 1) / 2 on each side.
            guard strides == [1, 1], kernel[0] % 2 == 1, kernel[1] % 2 == 1 else {
                throw unsupported("auto_pad \(autoPad) with strides \(strides) and kernel \(kernel) pads unevenly, which is not supported")
            }
            return [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2]
        default:
            throw unsupported("auto_pad \"\(autoPad)\" is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
        }
    }

    private func window(_ shape: [Int], kernel: [Int], strides: [Int], pads: [Int]) throws(DLError) -> Window2D {
        let w = Window2D(height: shape[1], width: shape[2], kernel: (kernel[0], kernel[1]),
                         stride: (strides[0], strides[1]), padding: (pads[0], pads[1]))
        guard w.outHeight > 0, w.outWidth > 0 else {
            throw unsupported("kernel \(kernel) with pads \(pads) does not fit the \(shape[1]) x \(shape[2]) input")
        }
        return w
    }

    private func requireImages(_ shape: [Int]) throws(DLError) {
        guard shape.count == 3 else {
            throw unsupported("needs images (batch, channels, height, width), but one sample has shape \(shape)")
        }
    }

    func conv(_ shape: inout [Int]) throws(DLError) -> ImportedLayer {
        try allow(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])
        try requireImages(shape)
        guard inputs.count >= 2, inputs.count <= 3, let w = constant(1) else {
            throw unsupported("expected inputs (x, weight[, bias]) with constant weight and bias")
        }
        guard try int("group") ?? 1 == 1 else { throw unsupported("group convolution is not supported") }
        if let d = try ints("dilations", count: 2), d != [1, 1] { throw unsupported("dilations \(d) are not supported") }
        let (dims, _) = try reader.count(w, "\(me): weight", bytesPerValue: 4)
        guard dims.count == 4, dims[1] == shape[0], dims[0] > 0, dims[2] > 0, dims[3] > 0 else {
            throw unsupported("the weight has dims \(dims); expected (filters, \(shape[0]), kh, kw)")
        }
        let kernel = [dims[2], dims[3]]
        if let k = try ints("kernel_shape", count: 2), k != kernel {
            throw unsupported("kernel_shape \(k) does not match the weight's \(kernel)")
        }
        let strides = try ints("strides", count: 2, in: 1...Limits.maxTensorElements) ?? [1, 1]
        let pads = try padding(kernel: kernel, strides: strides, shape: shape)
        let win = try window(shape, kernel: kernel, strides: strides, pads: pads)
        var layer = ImportedLayer(type: "conv2d", options: [("filters", .int(dims[0])), ("kernel_size", .ints(kernel)),
                                                             ("stride", .ints(strides)), ("padding", .ints(pads))],
                                  parameters: [try reader.floats(w, "\(me): weight", dims: dims)])
        if inputs.count == 3, !inputs[2].isEmpty {
            guard let b = constant(2) else { throw unsupported("the bias is not a constant") }
            layer.parameters.append(try reader.floats(b, "\(me): bias", dims: [dims[0]]))
        } else {
            layer.options.append(("bias", .bool(false)))
        }
        shape = [dims[0], win.outHeight, win.outWidth]
        return layer
    }

    func pool(_ shape: inout [Int], average: Bool) throws(DLError) -> ImportedLayer {
        try allow(average ? ["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"]
                          : ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"])
        try requireImages(shape)
        guard inputs.count == 1 else { throw unsupported("expected one input") }
        guard let kernel = try ints("kernel_shape", count: 2, in: 1...Limits.maxTensorElements) else {
            throw unsupported("kernel_shape is missing")
        }
        guard try int("ceil_mode") ?? 0 == 0 else { throw unsupported("ceil_mode = 1 is not supported") }
        if let d = try ints("dilations", count: 2), d != [1, 1] { throw unsupported("dilations \(d) are not supported") }
        guard try int("storage_order") ?? 0 == 0 else { throw unsupported("storage_order = 1 is not supported") }
        let strides = try ints("strides", count: 2, in: 1...Limits.maxTensorElements) ?? [1, 1]
        let pads = try padding(kernel: kernel, strides: strides, shape: shape)
        // Ours divides by the whole window; ONNX's default leaves padding out of the count.
        if average, pads != [0, 0], try int("count_include_pad") ?? 0 == 0 {
            throw unsupported("average pooling with padding and count_include_pad = 0 is not supported (this library counts the padding)")
        }
        // A window wholly in the padding has no maximum or average (ONNX requires pads < kernel).
        guard pads[0] < kernel[0], pads[1] < kernel[1] else {
            throw unsupported("pads \(pads) are not smaller than the kernel \(kernel)")
        }
        let win = try window(shape, kernel: kernel, strides: strides, pads: pads)
        shape = [shape[0], win.outHeight, win.outWidth]
        return ImportedLayer(type: average ? "avg_pool2d" : "max_pool2d",
                             options: [("kernel_size", .ints(kernel)), ("stride", .ints(strides)), ("padding", .ints(pads))])
    }

    func batchNorm(_ shape: [Int], extraOutputs: Int) throws(DLError) -> ImportedLayer {
        try allow(["epsilon", "momentum", "training_mode", "spatial", "consumed_inputs", "is_test"])
        guard extraOutputs == 0, try int("training_mode") ?? 0 == 0 else {
            throw unsupported("only the inference form (one output, training_mode 0) is read")
        }
        if let spatial = try int("spatial"), spatial != 1 { throw unsupported("spatial = 0 is not supported") }
        guard inputs.count == 5 else { throw unsupported("expected inputs (x, scale, bias, mean, var)") }
        let c = shape[0]
        var values: [[Float]] = []
        for (i, what) in ["scale", "bias", "mean", "var"].enumerated() {
            guard let t = constant(i + 1) else { throw unsupported("the \(what) is not a constant") }
            values.append(try reader.floats(t, "\(me): \(what)", dims: [c]))
        }
        guard values[3].allSatisfy({ $0 >= 0 }) else { throw unsupported("the running variance has negative values") }
        let eps = Double(try float("epsilon") ?? 1e-5)
        guard eps >= 1e-12, eps <= 1 else { throw unsupported("epsilon \(eps) is outside this library's range [1e-12, 1]") }
        let momentum = 1 - Double(try float("momentum") ?? 0.9)
        guard (0...1).contains(momentum) else { throw unsupported("momentum \(1 - momentum) is outside [0, 1]") }
        return ImportedLayer(type: "batch_norm", options: [("eps", .double(eps)), ("momentum", .double(momentum))],
                             parameters: [values[0], values[1]], buffers: [values[2], values[3]])
    }

    /// Reshape by a constant shape: the first entry is the batch (-1, 0, or the exporter's
    /// batch size); the rest, with 0 copying the input's size and one -1 inferred, must come
    /// to a flat vector or to [C, H, W].
    func reshape(_ shape: inout [Int], into layers: inout [ImportedLayer]) throws(DLError) {
        try allow(["allowzero"])
        guard try int("allowzero") ?? 0 == 0 else { throw unsupported("allowzero = 1 is not supported") }
        guard inputs.count == 2, let t = constant(1) else {
            throw unsupported("the target shape is not a constant; shapes computed from the input are not supported")
        }
        let target = try reader.int64s(t, "\(me): shape")
        guard target.count >= 2, target.count <= 4 else {
            throw unsupported("target shape \(target); expected (batch, features) or (batch, C, H, W)")
        }
        guard target[0] >= -1 else { throw unsupported("target shape \(target) has the entry \(target[0]) for the batch") }
        let count = try checkedCount(shape, "\(me) input")
        var dims: [Int] = []
        var inferred: Int? = nil
        for (i, d) in target.dropFirst().enumerated() {
            switch d {
            case -1:
                guard inferred == nil else { throw unsupported("target shape \(target) has two -1") }
                inferred = i
                dims.append(1)
            case 0:
                guard i < shape.count else { throw unsupported("target shape \(target) copies a dimension the input does not have") }
                dims.append(shape[i])
            case 1...Int64(Limits.maxTensorElements):
                dims.append(Int(d))
            default:
                throw unsupported("target shape \(target) has the entry \(d)")
            }
        }
        if target[0] == -1, inferred != nil { throw unsupported("target shape \(target) has two -1") }
        let known = try checkedCount(dims, "\(me) target")
        if let inferred {
            guard known > 0, count % known == 0 else { throw unsupported("target shape \(target) does not fit the input \(shape)") }
            dims[inferred] = count / known
        }
        guard try checkedCount(dims, "\(me) target") == count else {
            throw unsupported("target shape \(target) holds a different number of values than the input \(shape) (the batch must stay first)")
        }
        switch dims.count {
        case 1:
            if shape.count > 1 { layers.append(ImportedLayer(type: "flatten")) }
        case 3:
            if dims != shape { layers.append(ImportedLayer(type: "reshape", options: [("shape", .ints(dims))])) }
        default:
            throw unsupported("target shape \(target): a sample of rank \(dims.count) is not supported (flat, or [C, H, W])")
        }
        shape = dims
    }
}

/// A linear layer's weight (outputs, C H W) whose columns come in (H, W, C) order, as after
/// a channels-last flatten (Keras, tf2onnx), with its columns put in this library's (C, H, W)
/// order; with `inverse`, the other way. nil when the weight's size does not fit `chw`.
func reorderChannelsLastColumns(_ weight: [Float], chw: [Int], inverse: Bool = false) -> [Float]? {
    guard chw.count == 3 else { return nil }
    let (c, h, w) = (chw[0], chw[1], chw[2])
    let inputs = c * h * w
    guard inputs > 0, weight.count % inputs == 0 else { return nil }
    let outputs = weight.count / inputs
    var reordered = weight
    for o in 0..<outputs {
        for ci in 0..<c { for y in 0..<h { for x in 0..<w {
            let chwIndex = o * inputs + (ci * h + y) * w + x, hwcIndex = o * inputs + (y * w + x) * c + ci
            if inverse { reordered[hwcIndex] = weight[chwIndex] } else { reordered[chwIndex] = weight[hwcIndex] }
        } } }
    }
    return reordered
}

/// A (rows, cols) row-major matrix transposed.
func transpose(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    guard m.count == rows * cols, !m.isEmpty else { return m }
    return [Float](unsafeUninitializedCapacity: m.count) { out, n in
        for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = m[r * cols + c] } }
        n = m.count
    }
}
