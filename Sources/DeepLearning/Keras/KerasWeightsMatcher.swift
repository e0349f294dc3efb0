/// Loads a Keras 3 `.weights.h5` (layers/NAME/vars/0, 1, ...) into a model built from one of
/// our specs. The file has no architecture and HDF5 lists groups by name, not by model order,
/// so layers are matched by kind: our linear layers take the Keras layers whose first array
/// is a matrix, in the order of their names (Keras's default names dense, dense_1, dense_2,
/// ... give the model's order), conv2d layers those with a 4-d kernel, batch_norm layers those
/// with only vectors. Every count and shape is checked; a mismatch names both sides.
struct WeightsMatcher {
    let image: HDF5Image
    let source: String
    let channelsFirst: Bool

    enum Kind: String { case dense = "Dense", conv = "Conv2D", batchNorm = "BatchNormalization" }

    /// "dense_12" -> ("dense", 12), "dense" -> ("dense", 0): Keras's numbering of default names.
    static func sortKey(_ name: String) -> (String, Int) {
        if let underscore = name.lastIndex(of: "_"), let n = Int(name[name.index(after: underscore)...]), n >= 0 {
            return (String(name[..<underscore]), n)
        }
        return (name, 0)
    }

    /// The Keras layers with weights, by kind, each kind in name order.
    func groups() throws(DLError) -> [Kind: [String]] {
        guard let names = image.groups["layers"] else {
            throw DLError(.format, "\(source): no \"layers\" group; not a Keras 3 .weights.h5 (model.save_weights)")
        }
        var result: [Kind: [String]] = [:]
        for name in names {
            let vars = image.groups["layers/\(name)/vars"] ?? []
            guard !vars.isEmpty else { continue }
            let first = try image.describe("layers/\(name)/vars/0")
            let kind: Kind
            switch first.shape.count {
            case 2: kind = .dense
            case 4: kind = .conv
            case 1: kind = .batchNorm
            default:
                throw DLError(.unsupported, "\(source): layer \"\(name)\" has a first weight of shape \(first.shape); only Dense, Conv2D and BatchNormalization weights are read")
            }
            result[kind, default: []].append(name)
        }
        for (kind, list) in result {
            result[kind] = list.sorted { a, b in
                let (ka, kb) = (WeightsMatcher.sortKey(a), WeightsMatcher.sortKey(b))
                return ka.0 != kb.0 ? ka.0 < kb.0 : ka.1 < kb.1
            }
        }
        return result
    }

    func load(into model: any AnyModel) throws(DLError) {
        var available = try groups()
        let weights = KerasWeights(image: image, source: source, legacy: false)
        var plans: [KerasLayerPlan] = []
        var shape = model.inputShape
        /// The [C, H, W] a flatten just turned flat (channels-last weights order it H, W, C).
        var flattened: [Int]? = nil
        let shapes = model.layerOutputShapes
        for (i, type) in model.layerTypes.enumerated() {
            let prefix = "layers.\(i)."
            let mine = zip(model.parameterNames, model.parameterShapes).filter { $0.0.hasPrefix(prefix) }
            let kind: Kind?
            switch type {
            case "linear": kind = .dense
            case "conv2d": kind = .conv
            case "batch_norm": kind = .batchNorm
            default: kind = nil
            }
            if type == "flatten", shape.count == 3 { flattened = shape }
            if let kind {
                guard var list = available[kind], !list.isEmpty else {
                    throw DLError(.format, "\(source): the spec's layer \(i) (\(type)) has no \(kind.rawValue) weights left in the file")
                }
                let name = list.removeFirst()
                available[kind] = list
                let hasBias = mine.contains { $0.0.hasSuffix(".bias") }
                switch kind {
                case .dense:
                    let units = shapes[i][0], inputs = shape.reduce(1, *)
                    let hwc = (!channelsFirst && flattened != nil && flattened![0] > 1) ? [flattened![1], flattened![2], flattened![0]] : nil
                    plans.append(KerasLayerPlan(name: name, archiveName: name, kind: .dense(inputs: inputs, units: units, bias: hasBias, hwc: hwc)))
                    flattened = nil
                case .conv:
                    guard let w = mine.first?.1, w.count == 4 else { throw DLError(.internal, "\(source): conv2d layer \(i) has no 4-d weight") }
                    plans.append(KerasLayerPlan(name: name, archiveName: name, kind: .conv(kernel: [w[2], w[3]], inputs: w[1], filters: w[0], bias: hasBias)))
                case .batchNorm:
                    let channels = shape.count == 3 ? shape[0] : shape.reduce(1, *)
                    plans.append(KerasLayerPlan(name: name, archiveName: name, kind: .batchNorm(channels: channels, affine: !mine.isEmpty)))
                }
            } else if !["flatten", "dropout", "relu", "sigmoid", "tanh", "gelu", "silu", "elu", "leaky_relu", "softplus", "softmax"].contains(type) {
                flattened = nil
            }
            shape = shapes[i]
        }
        let left = available.values.flatMap { $0 }.sorted()
        guard left.isEmpty else {
            throw DLError(.format, "\(source): the file has weights the spec has no layer for: \(left.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        var layers: [ImportedLayer] = []
        for plan in plans {
            do throws(DLError) { layers.append(try weights.layer(plan)) } catch {
                throw DLError(error.kind, "\(error.message) (matched to the spec by kind and name order; see docs/interop.md)")
            }
        }
        try Reader(source: source, fileSize: 0).load(layers, into: model)
    }
}
