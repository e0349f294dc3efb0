import CONNXProto
import CProtobufC
import Glibc

/// An ONNX graph as the exporter builds it: plain Swift values, turned into protobuf-c
/// messages in one place (`ONNXGraph.encode`), so that no other code touches C memory.
struct ONNXGraph {
    /// An attribute value of a node.
    enum Attribute {
        case int(Int64)
        case float(Float)
        case ints([Int64])
        case string(String)
    }

    struct Node {
        var op: String
        var name: String
        var inputs: [String]
        var outputs: [String]
        var attributes: [(String, Attribute)] = []
    }

    /// A constant tensor: float32 weights, or int64 values (Reshape's shape).
    struct Initializer {
        enum Values { case floats([Float]), int64s([Int64]) }
        var name: String
        var dims: [Int64]
        var values: Values
    }

    var name: String
    var docString: String
    var nodes: [Node] = []
    var initializers: [Initializer] = []
    /// Graph input and output: name and the shape of one sample (the batch dimension,
    /// "batch", is added in front).
    var input: (name: String, shape: [Int])
    var output: (name: String, shape: [Int])
    var metadata: [(String, String)] = []

    /// The serialized ModelProto (IR version `irVersion`, default-domain opset `opset`).
    func encode(irVersion: Int64, opset: Int64, producerVersion: String) throws(DLError) -> [UInt8] {
        let model = try Alloc.message(Onnx__ModelProto.self, onnx__model_proto__init)
        defer { onnx__model_proto__free_unpacked(model, nil) }
        model.pointee.has_ir_version = 1
        model.pointee.ir_version = irVersion
        model.pointee.producer_name = try Alloc.string("deeplearning")
        model.pointee.producer_version = try Alloc.string(producerVersion)
        model.pointee.doc_string = try Alloc.string(docString)
        let opsets: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__OperatorSetIdProto>?> = try Alloc.list(1)
        model.pointee.opset_import = opsets
        let opsetId = try Alloc.message(Onnx__OperatorSetIdProto.self, onnx__operator_set_id_proto__init)
        opsets[0] = opsetId
        model.pointee.n_opset_import = 1
        opsetId.pointee.domain = try Alloc.string("")
        opsetId.pointee.has_version = 1
        opsetId.pointee.version = opset
        let props: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?> = try Alloc.list(metadata.count)
        model.pointee.metadata_props = props
        for (key, value) in metadata {
            let entry = try Alloc.message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
            props[model.pointee.n_metadata_props] = entry
            model.pointee.n_metadata_props += 1
            entry.pointee.key = try Alloc.string(key)
            entry.pointee.value = try Alloc.string(value)
        }

        let graph = try Alloc.message(Onnx__GraphProto.self, onnx__graph_proto__init)
        model.pointee.graph = graph
        graph.pointee.name = try Alloc.string(name)
        graph.pointee.doc_string = try Alloc.string(docString)
        let nodeList: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__NodeProto>?> = try Alloc.list(nodes.count)
        graph.pointee.node = nodeList
        for node in nodes {
            let n = try Alloc.message(Onnx__NodeProto.self, onnx__node_proto__init)
            nodeList[graph.pointee.n_node] = n
            graph.pointee.n_node += 1
            n.pointee.op_type = try Alloc.string(node.op)
            n.pointee.name = try Alloc.string(node.name)
            let inputs: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = try Alloc.list(node.inputs.count)
            n.pointee.input = inputs
            for s in node.inputs { inputs[n.pointee.n_input] = try Alloc.string(s); n.pointee.n_input += 1 }
            let outputs: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = try Alloc.list(node.outputs.count)
            n.pointee.output = outputs
            for s in node.outputs { outputs[n.pointee.n_output] = try Alloc.string(s); n.pointee.n_output += 1 }
            let attributes: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__AttributeProto>?> = try Alloc.list(node.attributes.count)
            n.pointee.attribute = attributes
            for (key, value) in node.attributes {
                let a = try Alloc.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
                attributes[n.pointee.n_attribute] = a
                n.pointee.n_attribute += 1
                a.pointee.name = try Alloc.string(key)
                a.pointee.has_type = 1
                switch value {
                case .int(let v):
                    a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
                    a.pointee.has_i = 1
                    a.pointee.i = v
                case .float(let v):
                    a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
                    a.pointee.has_f = 1
                    a.pointee.f = v
                case .ints(let v):
                    a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
                    a.pointee.ints = try Alloc.array(v)
                    a.pointee.n_ints = v.count
                case .string(let v):
                    a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING
                    let bytes = Array(v.utf8)
                    a.pointee.s.data = try Alloc.array(bytes)
                    a.pointee.s.len = bytes.count
                    a.pointee.has_s = 1
                }
            }
        }
        let tensors: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__TensorProto>?> = try Alloc.list(initializers.count)
        graph.pointee.initializer = tensors
        for initializer in initializers {
            let t = try Alloc.message(Onnx__TensorProto.self, onnx__tensor_proto__init)
            tensors[graph.pointee.n_initializer] = t
            graph.pointee.n_initializer += 1
            t.pointee.name = try Alloc.string(initializer.name)
            t.pointee.dims = try Alloc.array(initializer.dims)
            t.pointee.n_dims = initializer.dims.count
            t.pointee.has_data_type = 1
            // raw_data holds the values little-endian, as this machine stores them.
            switch initializer.values {
            case .floats(let v):
                t.pointee.data_type = Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue)
                t.pointee.raw_data.data = try Alloc.bytes(of: v)
                t.pointee.raw_data.len = v.count * 4
            case .int64s(let v):
                t.pointee.data_type = Int32(ONNX__TENSOR_PROTO__DATA_TYPE__INT64.rawValue)
                t.pointee.raw_data.data = try Alloc.bytes(of: v)
                t.pointee.raw_data.len = v.count * 8
            }
            t.pointee.has_raw_data = 1
        }
        let inputs: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__ValueInfoProto>?> = try Alloc.list(1)
        graph.pointee.input = inputs
        inputs[0] = try valueInfo(input.name, input.shape)
        graph.pointee.n_input = 1
        let outputs: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__ValueInfoProto>?> = try Alloc.list(1)
        graph.pointee.output = outputs
        outputs[0] = try valueInfo(output.name, output.shape)
        graph.pointee.n_output = 1

        let size = onnx__model_proto__get_packed_size(model)
        // Protobuf messages are limited to 2 GiB; ONNX keeps larger weights in external
        // files, which this writer does not produce.
        guard size < Int(Int32.max) else {
            throw DLError(.unsupported, "the ONNX model would take \(size) bytes, more than the 2 GiB a protobuf message may hold")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBufferPointer { onnx__model_proto__pack(model, $0.baseAddress) }
        guard written == size else { throw DLError(.internal, "protobuf-c packed \(written) bytes of \(size)") }
        return bytes
    }

    /// A float tensor value with shape ["batch", sample...].
    private func valueInfo(_ name: String, _ shape: [Int]) throws(DLError) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let info = try Alloc.message(Onnx__ValueInfoProto.self, onnx__value_info_proto__init)
        do throws(DLError) {
            info.pointee.name = try Alloc.string(name)
            let type = try Alloc.message(Onnx__TypeProto.self, onnx__type_proto__init)
            info.pointee.type = type
            let tensor = try Alloc.message(Onnx__TypeProto__Tensor.self, onnx__type_proto__tensor__init)
            type.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
            type.pointee.tensor_type = tensor
            tensor.pointee.has_elem_type = 1
            tensor.pointee.elem_type = Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue)
            let tensorShape = try Alloc.message(Onnx__TensorShapeProto.self, onnx__tensor_shape_proto__init)
            tensor.pointee.shape = tensorShape
            let dims: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension>?> = try Alloc.list(shape.count + 1)
            tensorShape.pointee.dim = dims
            for i in 0...shape.count {
                let dim = try Alloc.message(Onnx__TensorShapeProto__Dimension.self, onnx__tensor_shape_proto__dimension__init)
                dims[i] = dim
                tensorShape.pointee.n_dim += 1
                if i == 0 {
                    dim.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                    dim.pointee.dim_param = try Alloc.string("batch")
                } else {
                    dim.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                    dim.pointee.dim_value = Int64(shape[i - 1])
                }
            }
        } catch {
            onnx__value_info_proto__free_unpacked(info, nil)
            throw error
        }
        return info
    }
}

/// malloc-based allocation of protobuf-c messages and fields. Everything is malloc'd and
/// hung into its parent as soon as it exists, so that protobuf-c's own
/// `*_free_unpacked(message, NULL)` (which frees with the system allocator) releases a
/// whole tree, finished or not.
enum Alloc {
    static func message<M>(_ type: M.Type, _ initialize: (UnsafeMutablePointer<M>?) -> Void) throws(DLError) -> UnsafeMutablePointer<M> {
        guard let raw = calloc(1, MemoryLayout<M>.stride) else { throw noMemory() }
        let p = raw.bindMemory(to: M.self, capacity: 1)
        initialize(p)
        return p
    }

    static func string(_ s: String) throws(DLError) -> UnsafeMutablePointer<CChar> {
        guard let p = strdup(s) else { throw noMemory() }
        return p
    }

    /// `count` zeroed elements (pointers, filled in one by one while the message's count
    /// says how many are set); at least one, so that the result is never NULL.
    static func list<E>(_ count: Int) throws(DLError) -> UnsafeMutablePointer<E> {
        guard let raw = calloc(max(count, 1), MemoryLayout<E>.stride) else { throw noMemory() }
        return raw.bindMemory(to: E.self, capacity: max(count, 1))
    }

    static func array<E>(_ items: [E]) throws(DLError) -> UnsafeMutablePointer<E>? {
        guard !items.isEmpty else { return nil }
        guard let raw = malloc(items.count * MemoryLayout<E>.stride) else { throw noMemory() }
        let p = raw.bindMemory(to: E.self, capacity: items.count)
        items.withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: items.count) }
        return p
    }

    static func bytes<E>(of items: [E]) throws(DLError) -> UnsafeMutablePointer<UInt8>? {
        let n = items.count * MemoryLayout<E>.stride
        guard n > 0 else { return nil }
        guard let raw = malloc(n) else { throw noMemory() }
        items.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: n) }
        return raw.bindMemory(to: UInt8.self, capacity: n)
    }

    private static func noMemory() -> DLError { DLError(.noMemory, "out of memory building the ONNX model") }
}
