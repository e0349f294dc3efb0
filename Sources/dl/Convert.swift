import ArgumentParser
import DeepLearning

/// `dl convert IN OUT`: a model from one file format to another (checkpoint .h5, .onnx, Keras,
/// .safetensors).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between file formats: a checkpoint (.h5), ONNX (.onnx), Keras (.keras, Keras .h5) and a PyTorch state dict (.safetensors).",
        discussion: """
            The formats come from the extensions (.h5 or .hdf5, .onnx, .keras, .weights.h5, \
            .safetensors) unless --from/--to name them (onnx, h5, keras, keras_h5, keras_weights, \
            safetensors). A .h5 being read is a legacy Keras model when it has Keras's model_config, \
            else a checkpoint; a .h5 written is a checkpoint unless --to keras_h5. An ONNX file read \
            here must be a chain of the operators in docs/onnx.md, a Keras model a chain of the layers \
            in docs/interop.md; the model it becomes is trainable, with the loss and optimizer of \
            --options (a JSON object with "loss", "optimizer", "name", "seed", "init", "dtype" as in \
            a spec) or those the file says or the defaults. A Keras .weights.h5 needs \
            --options '{"spec": "SPEC.json"}'. A PyTorch state dict (.safetensors) is written with \
            the Python source of its nn.Sequential beside it (model.safetensors -> model.py) and read \
            given the model's spec (--spec spec.json); a file this library wrote carries its own.
            """)

    @Argument(help: "The model to read.") var input: String
    @Argument(help: "The file to write (replaced atomically).") var output: String
    @Option(help: "Format of INPUT: onnx, h5, keras, keras_h5, keras_weights or safetensors (default: from its extension).") var from: String?
    @Option(help: "Format of OUTPUT: onnx, h5, keras, keras_h5 or safetensors (default: from its extension).") var to: String?
    @Option(help: "JSON object of spec settings for an imported ONNX or Keras model.") var options: String?
    @Option(help: "The spec file of the model a .safetensors or .weights.h5 INPUT holds the weights of.") var spec: String?

    func run() throws {
        try runReporting { () throws(DLError) in
            var options = options
            if let spec {
                guard options == nil else { throw DLError(.invalidArgument, "--spec and --options cannot be combined; --spec S is --options '{\"spec\": S}'") }
                options = "{\"spec\": \(jsonString(spec))}"
            }
            let model = try importModel(from: input, format: from, options: options)
            try exportModel(model, to: output, format: to)
            print("\(input) -> \(output): \(model.layerTypes.count) layers, \(model.parameterCount) parameters, input \(model.inputShape), output \(model.outputShape)")
        }
    }
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
