import ArgumentParser
import DeepLearning
import Glibc

/// `dl train SPEC --data DIR --out CKPT.h5`: mini-batch training on MNIST-layout data.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a classifier spec on MNIST-layout IDX data, saving a checkpoint after every epoch.",
        discussion: """
        DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
        t10k-labels-idx1-ubyte, gzipped (.gz) or not (scripts/fetch_mnist.py DIR downloads them). \
        Pixels go in raw (0-255). When the spec has no "preprocessing", the tutorial's is fitted \
        on the training set (scale 1/255, then the global mean and std) and stored in the model, \
        so the checkpoint standardizes raw pixels itself.

        Each epoch visits the training set in a new order drawn from the model's seeded \
        generator; the last batch keeps the remainder. After each epoch it prints the mean \
        training loss, the accuracy on the whole training set and the loss and accuracy on the \
        test set, then writes CKPT, its history (CKPT without .h5, plus .history.csv: epoch, \
        train_loss, train_accuracy, test_loss, test_accuracy, seconds; accuracies as fractions, \
        seconds of training without evaluation) and a learning-curve drawing (.curve.svg).
        """)

    @Argument(help: "The JSON model spec (a cross_entropy classifier).") var spec: String
    @Option(help: "Folder with the MNIST IDX files.") var data: String
    @Option(help: "Epochs to train.") var epochs = 5
    @Option(help: "Samples per mini-batch.") var batchSize = 64
    @Option(help: "Learning rate, in place of the spec's optimizer.lr.") var lr: Double?
    @Option(help: "Seed of the initial weights and the shuffles, in place of the spec's.") var seed: UInt64?
    @Option(help: "The checkpoint to write (.h5).") var out: String

    func run() throws {
        try runReporting { () throws(DLError) in
            guard epochs >= 1 else { throw .invalid("--epochs must be at least 1, got \(epochs)") }
            guard batchSize >= 1 else { throw .invalid("--batch-size must be at least 1, got \(batchSize)") }
            if let lr { guard lr.isFinite, lr > 0 else { throw .invalid("--lr must be a positive number, got \(lr)") } }
            let base = replacingSuffix(out, ".h5", "") ?? out
            let historyPath = base + ".history.csv", curvePath = base + ".curve.svg"
            try checkWritable(out)

            let parsed = try SpecParser.parse(file: spec).with(seed: seed, learningRate: lr)
            let model = try makeModel(spec: parsed)
            let train = try loadMNIST(data, .train, for: model)
            let test = try loadMNIST(data, .test, for: model)
            let name = parsed.name.isEmpty ? spec : parsed.name
            print("model          \(name): \(model.inputSize) -> \(model.outputSize), \(model.parameterCount) parameters, "
                  + "\(parsed.optimizer.type) lr \(model.learningRate), seed \(parsed.seed)")
            print("data           \(data): \(train.count) training and \(test.count) test samples of shape \(train.sampleShape)")
            if parsed.preprocessing.isIdentity {
                let fitted = try Standardizer.fit(train, scale: 1.0 / 255)
                try model.setPreprocessing(Preprocessing(scale: fitted.scale, mean: fitted.mean, std: fitted.std))
                print("preprocessing  fitted on the training set: \(describe(model.spec.preprocessing))")
            } else {
                print("preprocessing  from the spec: \(describe(parsed.preprocessing))")
            }
            print("training       \(epochs) epoch\(epochs == 1 ? "" : "s"), batch \(batchSize)")
            fflush(nil)

            var history: [EpochRecord] = []
            var cpu = 0.0
            for e in 1...epochs {
                let bar = ProgressBar(label: "epoch \(e)/\(epochs)", total: (train.count + batchSize - 1) / batchSize)
                let start = monotonicSeconds(), cpuStart = processCPUSeconds()
                let result = try model.trainEpoch(on: train, batchSize: batchSize, progress: { bar.update($0) })
                let seconds = monotonicSeconds() - start
                cpu += processCPUSeconds() - cpuStart
                bar.finish()
                let onTrain = try evaluate(model, train), onTest = try evaluate(model, test)
                history.append(EpochRecord(epoch: result.epoch, trainLoss: result.meanLoss, trainAccuracy: onTrain.accuracy,
                                           testLoss: onTest.loss, testAccuracy: onTest.accuracy, seconds: seconds))
                print("epoch \(e)/\(epochs)  loss \(fixed(result.meanLoss))  train \(fixed(100 * onTrain.accuracy, 2))%  "
                      + "test \(fixed(100 * onTest.accuracy, 2))% (loss \(fixed(onTest.loss)))  \(fixed(seconds, 2)) s")
                try model.save(to: out)
                try writeTextFile(historyPath, historyCSV(history))
                try writeTextFile(curvePath, LearningCurve.svg(history, title: "\(name): \(parsed.optimizer.type), lr \(model.learningRate), batch \(batchSize), seed \(parsed.seed)"))
                fflush(nil)
            }
            let seconds = history.reduce(0) { $0 + $1.seconds }
            print("saved          \(out) (history \(historyPath), learning curve \(curvePath))")
            print("time           training \(fixed(seconds, 2)) s wall, \(fixed(cpu, 2)) s CPU (evaluations excluded)")
        }
    }

    /// Fails before any training when the checkpoint could not be written.
    private func checkWritable(_ path: String) throws(DLError) {
        guard !path.isEmpty else { throw .invalid("--out is empty") }
        guard !isDirectory(path) else { throw DLError(.io, "\(path): is a folder; --out names the checkpoint file to write") }
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        guard access(folder.isEmpty ? "/" : folder, W_OK) == 0 else {
            throw DLError(.io, "\(path): cannot write into folder \(folder) (\(String(cString: strerror(errno))))")
        }
    }
}

/// Loss and accuracy of a classifier over a whole labelled data set.
func evaluate(_ model: any AnyModel, _ data: Dataset) throws(DLError) -> (loss: Double, accuracy: Double) {
    let r = try model.evaluate(on: data)
    return (r.loss, r.accuracy ?? 0)
}
