import ArgumentParser
import DeepLearning

/// `dl predict CKPT INPUT`: the raw outputs (and class, for a classifier) of every sample, as CSV.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict every sample of a data set; write CSV to stdout or --output.",
        discussion: """
        INPUT is read as in dl train (see its --help): an MNIST folder (its --split), IDX images \
        (labels optional), CSV (rows of exactly the model's input size have no target columns) \
        or HDF5 (y optional). Values go in raw (pixels 0-255): the checkpoint applies its own \
        preprocessing. The output has a header, then one row per sample: index, \
        predicted_class (classifiers only) and the model's outputs (logits for cross-entropy). \
        Targets are not used for prediction; when the input has them, the loss (and accuracy) \
        they give is reported on stderr.
        """)

    @Argument(help: "An HDF5 checkpoint.") var checkpoint: String
    @Argument(help: "The samples: an MNIST folder or an IDX, CSV or HDF5 file.") var input: String
    @OptionGroup var format: DataOptions
    @Option(help: "MNIST folder only: which split to predict.") var split: Split = .test
    @Option(help: "Write the CSV to this file instead of stdout.") var output: String?

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try loadModel(from: checkpoint)
            let data = try format.load(input, split: split, labels: format.labels, for: model)
            let k = model.outputSize
            var outputs = [Float](repeating: 0, count: data.count * k)
            var classes = [Int32](repeating: 0, count: model.isClassifier ? data.count : 0)
            try data.withFeatures { (x) throws(DLError) in
                try outputs.withUnsafeMutableBufferPointer { (out) throws(DLError) in
                    try model.predict(x: x.baseAddress!, count: data.count, into: out.baseAddress!)
                    guard model.isClassifier else { return }
                    classes.withUnsafeMutableBufferPointer {
                        Kernels.argmaxRows(out.baseAddress!, rows: data.count, cols: k, $0.baseAddress!)
                    }
                }
            }
            var text = "index" + (model.isClassifier ? ",predicted_class" : "")
                + (0..<k).map { ",output_\($0)" }.joined() + "\n"
            text.reserveCapacity(data.count * (12 + 12 * k))
            for i in 0..<data.count {
                text += model.isClassifier ? "\(i),\(classes[i])" : "\(i)"
                for v in outputs[i * k ..< (i + 1) * k] { text += ",\(v)" }
                text += "\n"
            }
            if let output {
                try writeTextFile(output, text)
                printError("wrote \(data.count) predictions to \(output)")
            } else {
                print(text, terminator: "")
            }
            if data.targets != .none {
                printError("\(describe(try model.evaluate(on: data))) on the \(data.count) samples' targets")
            }
        }
    }
}
