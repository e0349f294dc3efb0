import ArgumentParser
import DeepLearning

/// `dl convert IN OUT`: a model from one file format to another (checkpoint .h5 <-> .onnx).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between file formats: a checkpoint (.h5) and ONNX (.onnx).",
        discussion: """
            The formats come from the extensions (.h5 or .hdf5, .onnx) unless --from/--to name them. \
            An ONNX file read here must be a chain of the operators in docs/onnx.md; the model it \
            becomes is trainable, with the loss and optimizer of --options (a JSON object with \
            "loss", "optimizer", "name", "seed", "init", "dtype" as in a spec) or the defaults.
            """)

    @Argument(help: "The model to read.") var input: String
    @Argument(help: "The file to write (replaced atomically).") var output: String
    @Option(help: "Format of INPUT: onnx or h5 (default: from its extension).") var from: String?
    @Option(help: "Format of OUTPUT: onnx or h5 (default: from its extension).") var to: String?
    @Option(help: "JSON object of spec settings for an imported ONNX model.") var options: String?

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try importModel(from: input, format: from, options: options)
            try exportModel(model, to: output, format: to)
            print("\(input) -> \(output): \(model.layerTypes.count) layers, \(model.parameterCount) parameters, input \(model.inputShape), output \(model.outputShape)")
        }
    }
}
