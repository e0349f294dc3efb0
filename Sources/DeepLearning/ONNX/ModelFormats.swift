/// The file formats a model can be exported to and imported from, by name: one pair of
/// entry points (`exportModel`, `importModel`) that the C ABI, the CLI and the bindings
/// share, so that another format is one more case here.
///
///     "onnx"           ONNX (ONNXExport, ONNXImport), extension .onnx
///     "h5"             this library's checkpoint (Checkpoint), extensions .h5 .hdf5
///     "keras"          a Keras 3 archive (KerasExport, KerasImport), extension .keras
///     "keras_h5"       a legacy Keras model file; read from .h5/.hdf5 when the file has
///                      Keras's root attribute model_config or group /model_weights, written
///                      only when named (.h5 writes our checkpoint)
///     "keras_weights"  a Keras 3 .weights.h5 (read only, with a spec in the options),
///                      extension .weights.h5
///     "safetensors"    a PyTorch nn.Sequential state dict (TorchStateDict), extension .safetensors
public enum ModelFormat: String, CaseIterable, Sendable {
    case onnx
    case h5
    case keras
    case kerasH5 = "keras_h5"
    case kerasWeights = "keras_weights"
    case safetensors

    /// The format `name` names, or, when nil, the one `path`'s extension says (and, for a
    /// `.h5` being read, its content: Keras's or our checkpoint; a file the HDF5 reader
    /// cannot read throws its error).
    public static func resolve(_ name: String?, path: String, reading: Bool = false) throws(DLError) -> ModelFormat {
        if let name {
            guard let format = ModelFormat(rawValue: name) else {
                throw DLError(.unsupported, "unknown model format \"\(name)\"; the formats are \(names)")
            }
            return format
        }
        let lower = path.lowercased()
        if lower.hasSuffix(".onnx") { return .onnx }
        if lower.hasSuffix(".keras") { return .keras }
        if lower.hasSuffix(".weights.h5") { return .kerasWeights }
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") {
            guard reading else { return .h5 }
            return try KerasImport.isKerasH5(path: path) ? .kerasH5 : .h5
        }
        if lower.hasSuffix(".safetensors") { return .safetensors }
        throw DLError(.invalidArgument, "\(path): cannot tell the model format from the file name (expected .onnx, .h5, .hdf5, .keras, .weights.h5 or .safetensors); name the format (\(names))")
    }

    static var names: String { allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }
}

/// Writes `model` to `path` in `format` (nil: from the extension).
public func exportModel(_ model: any AnyModel, to path: String, format: String? = nil) throws(DLError) {
    switch try ModelFormat.resolve(format, path: path) {
    case .onnx: try ONNXExport.write(model, to: path)
    case .h5: try model.save(to: path)
    case .safetensors: try TorchStateDict.export(model, to: path)
    case .keras: try KerasExport.writeArchive(model, to: path)
    case .kerasH5: try KerasExport.writeLegacy(model, to: path)
    case .kerasWeights:
        throw DLError(.unsupported, "\(path): writing a Keras .weights.h5 alone is not supported; write a .keras archive (format \"keras\"), which holds the weights and the architecture")
    }
}

/// Reads a model from `path` in `format` (nil: from the extension). `options` is a JSON
/// object: for ONNX and Keras, the spec settings the file does not say (`ONNXImport.optionKeys`);
/// for a Keras .weights.h5, the spec (`KerasImport.weightsOptionKeys`); safetensors takes the
/// spec (`TorchStateDict.optionKeys`); a checkpoint takes none.
public func importModel(from path: String, format: String? = nil, options: String? = nil) throws(DLError) -> any AnyModel {
    switch try ModelFormat.resolve(format, path: path, reading: true) {
    case .onnx: return try ONNXImport.load(path: path, options: options)
    case .keras: return try KerasImport.loadArchive(path: path, options: options)
    case .kerasH5: return try KerasImport.loadLegacy(path: path, options: options)
    case .kerasWeights: return try KerasImport.loadWeights(path: path, options: options)
    case .h5:
        if let options, !options.allSatisfy({ $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }), options != "{}" {
            throw DLError(.invalidArgument, "options_json: a checkpoint (.h5) takes no options; pass NULL")
        }
        return try loadModel(from: path)
    case .safetensors: return try TorchStateDict.load(path: path, options: options)
    }
}
