import ArgumentParser
import DeepLearning
import Glibc

/// `dl predict CKPT INPUT`: the class and raw outputs of every sample, as CSV.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict the class of every sample of a data file; write CSV to stdout or --output.",
        discussion: """
        INPUT is read by its name:
          *.h5, *.hdf5        HDF5 with datasets x (samples first) and, optionally, y (labels)
          *.csv, *.csv.gz     CSV, one sample per row: the label first, then the values \
        (MNIST as CSV; an optional header row); rows of exactly the model's input size have \
        no label column
          anything else       IDX images (MNIST's format, gzipped or not), read with the labels \
        file beside it, if there is one, whose name has labels-idx1 for images-idx3 \
        (t10k-images-idx3-ubyte.gz -> t10k-labels-idx1-ubyte.gz)
        Values go in raw (pixels 0-255): the checkpoint applies its own preprocessing. The \
        output has a header, then one row per sample: index, predicted_class and the model's \
        outputs (logits for cross-entropy). Labels are optional and not used for prediction; \
        when the input has them, the accuracy they give is reported on stderr.
        """)

    @Argument(help: "An HDF5 checkpoint of a classifier.") var checkpoint: String
    @Argument(help: "The samples: HDF5, CSV or IDX images.") var input: String
    @Option(help: "Write the CSV to this file instead of stdout.") var output: String?

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try loadModel(from: checkpoint)
            let data = try Self.load(input, featureCount: model.inputSize)
            try check(data, fits: model, input)
            let k = model.outputSize
            var outputs = [Float](repeating: 0, count: data.count * k)
            var classes = [Int32](repeating: 0, count: data.count)
            try data.features.withUnsafeBufferPointer { (x) throws(DLError) in
                try outputs.withUnsafeMutableBufferPointer { (out) throws(DLError) in
                    try model.predict(x: x.baseAddress!, count: data.count, into: out.baseAddress!)
                    classes.withUnsafeMutableBufferPointer {
                        Kernels.argmaxRows(out.baseAddress!, rows: data.count, cols: k, $0.baseAddress!)
                    }
                }
            }
            var text = "index,predicted_class," + (0..<k).map { "output_\($0)" }.joined(separator: ",") + "\n"
            text.reserveCapacity(data.count * (12 + 12 * k))
            for i in 0..<data.count {
                text += "\(i),\(classes[i])"
                for v in outputs[i * k ..< (i + 1) * k] { text += ",\(v)" }
                text += "\n"
            }
            if let output {
                try writeTextFile(output, text)
                printError("wrote \(data.count) predictions to \(output)")
            } else {
                print(text, terminator: "")
            }
            if data.isLabelled {
                let correct = zip(classes, data.labels).filter { $0 == $1 }.count
                printError("accuracy \(fixed(100 * Double(correct) / Double(data.count), 2))% (\(correct) of \(data.count) labelled samples)")
            }
        }
    }

    /// The data set in `path`, its format chosen by the file name (see the discussion).
    static func load(_ path: String, featureCount: Int) throws(DLError) -> Dataset {
        let lower = path.lowercased()
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") { return try Dataset.loadHDF5(path) }
        if lower.hasSuffix(".csv") || lower.hasSuffix(".csv.gz") { return try Dataset.loadCSV(path, featureCount: featureCount) }
        guard access(path, R_OK) == 0 else {
            throw DLError(.io, "\(path): cannot read the file (\(String(cString: strerror(errno))))")
        }
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let folder = String(path[..<slash]), name = String(path[slash...])
        guard name.contains("images-idx3") else {
            throw .invalid("\(path): not a known input: expected *.h5 or *.hdf5 (HDF5), *.csv[.gz] (CSV), "
                           + "or IDX images named like t10k-images-idx3-ubyte[.gz]")
        }
        let labelName = name.replacingOccurrences("images-idx3", "labels-idx1")
        let stem = replacingSuffix(labelName, ".gz", "") ?? labelName
        // Without a labels file beside the images, they are predicted unlabelled.
        let candidates = [folder + stem + ".gz", folder + stem]
        let labels = candidates.first { access($0, F_OK) == 0 }
        return try Dataset.loadIDX(images: path, labels: labels)
    }
}

extension String {
    /// Every `target` replaced by `replacement` (Foundation's method, which the tool does not use).
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = "", rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
