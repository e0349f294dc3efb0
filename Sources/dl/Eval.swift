import ArgumentParser
import DeepLearning

/// `dl eval CKPT --data PATH`: loss (and accuracy, for a classifier) of a checkpoint on data.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and accuracy of a checkpoint on a data set with targets (MNIST folder, IDX, CSV or HDF5).",
        discussion: "The data is read as in dl train (see its --help); a classifier reports its accuracy too.")

    @Argument(help: "An HDF5 checkpoint.") var checkpoint: String
    @Option(help: "The data: an MNIST folder or an IDX, CSV or HDF5 file.") var data: String
    @OptionGroup var format: DataOptions
    @Option(help: "MNIST folder only: which split to evaluate on.") var split: Split = .test

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try loadModel(from: checkpoint)
            let dataset = try format.load(data, split: split, labels: format.labels, for: model)
            let r = try model.evaluate(on: dataset)
            let part = isDirectory(data) ? "the \(split.rawValue) split of \(data)" : data
            print("\(checkpoint) on \(part) (\(dataset.count) samples)")
            print("loss \(fixed(r.loss))")
            if let accuracy = r.accuracy { print("accuracy \(fixed(100 * accuracy, 2))%") }
        }
    }
}
