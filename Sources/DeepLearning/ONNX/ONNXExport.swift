import Glibc

/// Writes a model as an ONNX inference graph (see docs/onnx.md for the operator table).
///
/// The graph takes the raw input, as `predict` does: the spec's preprocessing becomes
/// `Mul`/`Sub`/`Div` nodes at the front. The batch dimension is symbolic ("batch"); one
/// sample keeps the model's input shape. Dropout is left out (inference). Weights are
/// stored as float32 whatever the model's dtype, in initializers named like the model's
/// parameters ("layers.0.weight"). The metadata holds the library's version and the spec's
/// JSON, which `ONNXImport` reads back for the loss and optimizer.
public enum ONNXExport {
    /// Opset 20 is the first with `Gelu`; ONNX Runtime has run it since 1.17.
    public static let opset: Int64 = 20
    /// The IR version that goes with opset 20 (onnx 1.15).
    public static let irVersion: Int64 = 9

    /// The serialized ModelProto of `model`.
    public static func encode(_ model: any AnyModel) throws(DLError) -> [UInt8] {
        if let m = model as? Model<Float> { return try graph(m).encode(irVersion: irVersion, opset: opset, producerVersion: "\(Version.string)") }
        if let m = model as? Model<Double> { return try graph(m).encode(irVersion: irVersion, opset: opset, producerVersion: "\(Version.string)") }
        throw DLError(.internal, "ONNX export: unknown model type \(type(of: model))")
    }

    /// Writes `model` to `path` as ONNX, atomically (a temporary file renamed over `path`).
    public static func write(_ model: any AnyModel, to path: String) throws(DLError) {
        try writeFile(try encode(model), to: path)
    }

    static func graph<T: DLScalar>(_ model: Model<T>) throws(DLError) -> ONNXGraph {
        let spec = model.spec
        let name = spec.name.isEmpty ? "deeplearning" : spec.name
        var g = ONNXGraph(name: name, docString: name, input: ("input", model.inputShape), output: ("output", model.outputShape))
        g.metadata = [("deeplearning.version", "\(Version.string)"), ("deeplearning.spec", spec.json)]
        var current = "input"
        /// Adds a node named "<name>.<op>" and returns its output, "<name>.<op in lower case>".
        func emit(_ op: String, _ name: String, _ inputs: [String], _ attributes: [(String, ONNXGraph.Attribute)]) -> String {
            let output = "\(name).\(op.lowercased())"
            g.nodes.append(.init(op: op, name: "\(name).\(op)", inputs: inputs, outputs: [output], attributes: attributes))
            return output
        }
        /// Adds a node reading the current value and `inputs`, and makes its output current.
        func node(_ op: String, _ name: String, _ inputs: [String], _ attributes: [(String, ONNXGraph.Attribute)] = []) {
            current = emit(op, name, [current] + inputs, attributes)
        }
        func scalar(_ name: String, _ v: Double) -> String {
            g.initializers.append(.init(name: name, dims: [], values: .floats([Float(v)])))
            return name
        }
        func tensor(_ p: Parameter<T>) -> String {
            g.initializers.append(.init(name: p.name, dims: p.value.shape.map { Int64($0) }, values: .floats(p.values.map { Float($0) })))
            return p.name
        }

        let p = spec.preprocessing
        if p.scale != 1 { node("Mul", "preprocessing.scale", [scalar("preprocessing.scale", p.scale)]) }
        if p.mean != 0 { node("Sub", "preprocessing.mean", [scalar("preprocessing.mean", p.mean)]) }
        if p.std != 1 { node("Div", "preprocessing.std", [scalar("preprocessing.std", p.std)]) }

        var inputShape = model.inputShape
        for (i, layer) in model.layers.enumerated() {
            let prefix = "layers.\(i)"
            let options = i < spec.layers.count ? spec.layers[i] : ComponentSpec(type: layer.type)
            switch layer {
            case let l as Linear<T>:
                node("Gemm", prefix, [tensor(l.weight)] + (l.bias.map { [tensor($0)] } ?? []), [("transB", .int(1))])
            case let l as Conv2D<T>:
                let w = l.window
                node("Conv", prefix, [tensor(l.weight)] + (l.bias.map { [tensor($0)] } ?? []), [
                    ("kernel_shape", .ints([Int64(w.kernelHeight), Int64(w.kernelWidth)])),
                    ("strides", .ints([Int64(w.strideHeight), Int64(w.strideWidth)])),
                    ("pads", .ints([Int64(w.padHeight), Int64(w.padWidth), Int64(w.padHeight), Int64(w.padWidth)])),
                    ("dilations", .ints([1, 1])), ("group", .int(1)),
                ])
            case let l as Pool2D<T>:
                let w = l.window
                var attributes: [(String, ONNXGraph.Attribute)] = [
                    ("kernel_shape", .ints([Int64(w.kernelHeight), Int64(w.kernelWidth)])),
                    ("strides", .ints([Int64(w.strideHeight), Int64(w.strideWidth)])),
                    ("pads", .ints([Int64(w.padHeight), Int64(w.padWidth), Int64(w.padHeight), Int64(w.padWidth)])),
                ]
                // Our average divides by the whole window, padding included.
                if l.mode == .average { attributes.append(("count_include_pad", .int(1))) }
                node(l.mode == .max ? "MaxPool" : "AveragePool", prefix, [], attributes)
            case let l as BatchNorm<T>:
                let c = l.channels
                let scale = l.weight.map(tensor) ?? {
                    g.initializers.append(.init(name: "\(prefix).scale", dims: [Int64(c)], values: .floats(.init(repeating: 1, count: c))))
                    return "\(prefix).scale"
                }()
                let shift = l.bias.map(tensor) ?? {
                    g.initializers.append(.init(name: "\(prefix).shift", dims: [Int64(c)], values: .floats(.init(repeating: 0, count: c))))
                    return "\(prefix).shift"
                }()
                // ONNX's momentum weighs the old running value (Keras' convention), ours the batch.
                node("BatchNormalization", prefix, [scale, shift, tensor(l.runningMean), tensor(l.runningVar)],
                     [("epsilon", .float(Float(l.eps))), ("momentum", .float(Float(1 - l.momentum)))])
            case is Dropout<T>:
                break
            case let l as Reshape<T>:
                if l.type == "flatten" {
                    node("Flatten", prefix, [], [("axis", .int(1))])
                } else {
                    let shapeName = "\(prefix).shape"
                    g.initializers.append(.init(name: shapeName, dims: [Int64(l.outputShape.count + 1)],
                                                values: .int64s([-1] + l.outputShape.map { Int64($0) })))
                    node("Reshape", prefix, [shapeName])
                }
            case is Softmax<T>:
                // Ours is over all of a sample's values; ONNX's over the last axis.
                if inputShape.count > 1 { node("Flatten", prefix, [], [("axis", .int(1))]) }
                node("Softmax", prefix, [], [("axis", .int(-1))])
                if inputShape.count > 1 {
                    let shapeName = "\(prefix).shape"
                    g.initializers.append(.init(name: shapeName, dims: [Int64(inputShape.count + 1)],
                                                values: .int64s([-1] + inputShape.map { Int64($0) })))
                    node("Reshape", prefix, [shapeName])
                }
            default:
                current = try activation(layer.type, options, prefix, current, emit: emit, scalar: scalar)
            }
            inputShape = layer.outputShape
        }
        if current == "input" { node("Identity", "output", []) }
        // The last node's output is the graph's output.
        g.nodes[g.nodes.count - 1].outputs[0] = "output"
        return g
    }

    /// Elementwise activations: ONNX's own operator where opset 20 has one with our maths,
    /// otherwise a composition. `emit(op, name, inputs, attributes)` adds a node and returns
    /// its output; the result is the activation's output.
    private static func activation(_ type: String, _ options: ComponentSpec, _ prefix: String, _ x: String,
                                   emit: (String, String, [String], [(String, ONNXGraph.Attribute)]) -> String,
                                   scalar: (String, Double) -> String) throws(DLError) -> String {
        switch type {
        case "relu": return emit("Relu", prefix, [x], [])
        case "sigmoid": return emit("Sigmoid", prefix, [x], [])
        case "tanh": return emit("Tanh", prefix, [x], [])
        case "leaky_relu": return emit("LeakyRelu", prefix, [x], [("alpha", .float(Float(try options.double("alpha"))))])
        case "elu": return emit("Elu", prefix, [x], [("alpha", .float(Float(try options.double("alpha"))))])
        case "gelu": return emit("Gelu", prefix, [x], [("approximate", .string(try options.string("approximate")))])
        case "silu":
            // x * sigmoid(x), as torch.onnx.export writes SiLU.
            return emit("Mul", prefix, [x, emit("Sigmoid", prefix, [x], [])], [])
        case "softplus":
            let beta = try options.double("beta"), threshold = try options.double("threshold")
            if beta == 1 && threshold >= 20 {
                // Above the threshold ours is x, ONNX's log(1 + e^x): they differ by less than 3e-9.
                return emit("Softplus", prefix, [x], [])
            }
            // y = where(beta x > threshold, x, softplus(beta x) / beta)
            let b = scalar(prefix + ".beta", beta)
            let z = emit("Mul", prefix, [x, b], [])
            let soft = emit("Div", prefix, [emit("Softplus", prefix, [z], []), b], [])
            let above = emit("Greater", prefix, [z, scalar(prefix + ".threshold", threshold)], [])
            return emit("Where", prefix, [above, x, soft], [])
        default:
            throw DLError(.unsupported, "ONNX export: the layer type \"\(type)\" has no ONNX form in this library")
        }
    }

    /// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
    static func writeFile(_ bytes: [UInt8], to path: String) throws(DLError) {
        let temporary = path + ".tmp-\(getpid())"
        guard let file = fopen(temporary, "wb") else {
            throw DLError(.io, "\(path): cannot create the file: \(String(cString: strerror(errno)))")
        }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let flushed = fflush(file) == 0
        let closed = fclose(file) == 0
        guard written == bytes.count, flushed, closed else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DLError(.io, "\(path): cannot write the file: \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DLError(.io, "\(path): cannot replace the file: \(reason)")
        }
    }
}
