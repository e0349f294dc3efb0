import ArgumentParser
import DeepLearning

/// `dl eval CKPT --data DIR`: loss and accuracy of a checkpoint on MNIST-layout data.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and accuracy of a checkpoint on the test (or training) split of MNIST-layout IDX data.")

    enum Split: String, ExpressibleByArgument, CaseIterable {
        case test, train
    }

    @Argument(help: "An HDF5 checkpoint of a classifier.") var checkpoint: String
    @Option(help: "Folder with the MNIST IDX files (see dl train --help).") var data: String
    @Option(help: "Which split to evaluate on.") var split: Split = .test

    func run() throws {
        try runReporting { () throws(DLError) in
            let model = try loadModel(from: checkpoint)
            let dataset = try loadMNIST(data, split == .test ? .test : .train, for: model)
            let r = try evaluate(model, dataset)
            print("\(checkpoint) on the \(split.rawValue) split of \(data) (\(dataset.count) samples)")
            print("loss \(fixed(r.loss))")
            print("accuracy \(fixed(100 * r.accuracy, 2))%")
        }
    }
}
