/// The file formats a model can be exported to and imported from, by name: one pair of
/// entry points (`exportModel`, `importModel`) that the C ABI, the CLI and the bindings
/// share, so that another format is one more case here.
///
///     "onnx"   ONNX (ONNXExport, ONNXImport), extension .onnx
///     "h5"     this library's checkpoint (Checkpoint), extensions .h5 .hdf5
///     "safetensors"  a PyTorch nn.Sequential state dict (TorchStateDict), extension .safetensors
public enum ModelFormat: String, CaseIterable, Sendable {
    case onnx
    case h5
    case safetensors

    /// The format `name` names, or, when nil, the one `path`'s extension says.
    public static func resolve(_ name: String?, path: String) throws(DLError) -> ModelFormat {
        if let name {
            guard let format = ModelFormat(rawValue: name) else {
                throw DLError(.unsupported, "unknown model format \"\(name)\"; the formats are \(names)")
            }
            return format
        }
        let lower = path.lowercased()
        if lower.hasSuffix(".onnx") { return .onnx }
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") { return .h5 }
        if lower.hasSuffix(".safetensors") { return .safetensors }
        throw DLError(.invalidArgument, "\(path): cannot tell the model format from the file name (expected .onnx, .h5, .hdf5 or .safetensors); name the format (\(names))")
    }

    static var names: String { allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }
}

/// Writes `model` to `path` in `format` (nil: from the extension).
public func exportModel(_ model: any AnyModel, to path: String, format: String? = nil) throws(DLError) {
    switch try ModelFormat.resolve(format, path: path) {
    case .onnx: try ONNXExport.write(model, to: path)
    case .h5: try model.save(to: path)
    case .safetensors: try TorchStateDict.export(model, to: path)
    }
}

/// Reads a model from `path` in `format` (nil: from the extension). `options` is a JSON
/// object: for ONNX, the spec settings the graph does not say (`ONNXImport.optionKeys`);
/// a checkpoint takes none; safetensors takes the spec (`TorchStateDict.optionKeys`).
public func importModel(from path: String, format: String? = nil, options: String? = nil) throws(DLError) -> any AnyModel {
    switch try ModelFormat.resolve(format, path: path) {
    case .onnx: return try ONNXImport.load(path: path, options: options)
    case .h5:
        if let options, !options.allSatisfy({ $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }), options != "{}" {
            throw DLError(.invalidArgument, "options_json: a checkpoint (.h5) takes no options; pass NULL")
        }
        return try loadModel(from: path)
    case .safetensors: return try TorchStateDict.load(path: path, options: options)
    }
}
