import ArgumentParser
import DeepLearning
import Glibc

/// `dl train SPEC --data PATH --out CKPT`: mini-batch training, classifiers and regression alike.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a spec (or resume a checkpoint) on a data set, saving a checkpoint after every epoch.",
        discussion: """
        The data (--data, and --test for the set evaluated after each epoch) is one of:
          an MNIST folder     train-images-idx3-ubyte, train-labels-idx1-ubyte, \
        t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, gzipped (.gz) or not \
        (scripts/fetch_mnist.py DIR downloads them); --data trains on the train split and \
        tests on the t10k split
          IDX images          MNIST's format, with their labels from --labels or the file beside \
        them whose name has labels-idx1 for images-idx3
          CSV (*.csv[.gz])    one sample per row: the target first (a class label, or --targets \
        N values; by default one value per output for a model that is not a classifier), then \
        the features; an optional header row
          HDF5 (*.h5)         datasets x (samples first) and y: integer labels (N,) or float \
        targets (N,) or (N, outputs)
        --format mnist|idx|csv|hdf5 overrides what the paths suggest (for --data and --test alike). Values go in raw. When \
        the spec has no "preprocessing", the tutorial's standardization is fitted on the \
        training set (the global mean and std, after a scale of 1/255 for MNIST and IDX bytes) \
        and stored in the model, so the checkpoint standardizes raw inputs itself.

        Each epoch visits the training set in a new order drawn from the model's seeded \
        generator; the last batch keeps the remainder. After each epoch it prints the mean \
        training loss, the loss (and a classifier's accuracy) on the whole training set and on \
        the test set, then writes CKPT, its history (CKPT without .h5, plus .history.csv: epoch, \
        train_loss, train_accuracy, test_loss, test_accuracy, seconds; accuracies as fractions, \
        empty for regression or without a test set; seconds of training without evaluation) and \
        a learning-curve drawing (.curve.svg).

        --resume CKPT continues a run from a checkpoint instead of a spec: its parameters, \
        optimizer state, learning rate, epoch counter and random generator (so the shuffles) \
        carry on, so stopping after k epochs and resuming gives the same bits as one \
        uninterrupted run. --epochs is then the total the run ends at, and the history beside \
        CKPT is continued.

        Under mpirun (mpirun -np N dl train ...; a dl built with MPI), the N processes train \
        one model data-parallel: every rank reads the data, each step takes --batch-size \
        samples per rank (N x --batch-size in all, the same step as one process with that \
        batch), gradients are summed with one MPI_Allreduce per step, and every rank holds \
        the same parameters. Rank 0 alone prints and writes CKPT, which resumes on any number \
        of ranks or without MPI. docs/distributed.md has the details.
        """)

    @Argument(help: "The JSON model spec (omit it with --resume).") var spec: String?
    @Option(help: "Continue training this checkpoint, from the epoch it reached.") var resume: String?
    @Option(help: "The training data: an MNIST folder or an IDX, CSV or HDF5 file.") var data: String
    @Option(help: "The data evaluated after each epoch (default: an MNIST folder's test split; none for files).")
    var test: String?
    @Option(help: ArgumentHelp("IDX only: the labels file of the --test images.", valueName: "path"))
    var testLabels: String?
    @OptionGroup var format: DataOptions
    @Option(help: "Epochs to train (with --resume: the epoch to end at).") var epochs = 5
    @Option(help: "Samples per mini-batch (under mpirun: per rank).") var batchSize = 64
    @Option(help: "Learning rate, in place of the spec's optimizer.lr.") var lr: Double?
    @Option(help: "Seed of the initial weights and the shuffles, in place of the spec's.") var seed: UInt64?
    @Option(help: "The checkpoint to write (.h5; with --resume, by default the resumed one).") var out: String?

    func run() throws {
        let world: MPIWorld?
        do { world = try MPIWorld.start() } catch {
            printError("dl: error: \(error.message)")
            throw ExitCode(1)
        }
        guard let world else { return try runReporting { () throws(DLError) in try train(world: nil) } }
        // Ranks other than 0 print nothing (their figures are rank 0's: all are global).
        if world.rank != 0 {
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { dup2(null, 1); close(null) }
        }
        do throws(DLError) { try train(world: world) } catch { world.abort(error.message) }
        world.finish()
    }

    /// The training run; `world`: the MPI world when launched by mpirun.
    private func train(world: MPIWorld?) throws(DLError) {
        let writes = (world?.rank ?? 0) == 0
        do {
            guard batchSize >= 1 else { throw .invalid("--batch-size must be at least 1, got \(batchSize)") }
            if let lr { guard lr.isFinite, lr > 0 else { throw .invalid("--lr must be a positive number, got \(lr)") } }
            let (model, name) = try start()
            if let world, world.size > 1 {
                guard let parallel = model as? any DataParallel else { throw DLError(.internal, "this model cannot train data-parallel") }
                try parallel.setGradientReducer(try world.reducer())
            }
            guard epochs > model.epoch else {
                throw .invalid(resume == nil ? "--epochs must be at least 1, got \(epochs)"
                               : "\(resume!) has already trained \(model.epoch) epochs; --epochs \(epochs) leaves none to do")
            }
            guard let out = out ?? resume else { throw .invalid("--out names the checkpoint to write") }
            let base = replacingSuffix(out, ".h5", "") ?? out
            let historyPath = base + ".history.csv", curvePath = base + ".curve.svg"
            if writes { try checkWritable(out) }

            let train = try format.load(data, split: .train, labels: format.labels, for: model)
            try model.checkTargets(train, for: "training")
            let testPath = test ?? (isDirectory(data) && (format.format ?? .mnist) == .mnist ? data : nil)
            let testSet = try testPath.map { (path) throws(DLError) in
                try format.load(path, split: .test, labels: testLabels, for: model)
            }
            if let testSet { try model.checkTargets(testSet, for: "testing") }
            let optimizer = model.spec.optimizer.type
            print("model          \(name): \(model.inputSize) -> \(model.outputSize), \(model.parameterCount) parameters, "
                  + "\(optimizer) lr \(model.learningRate), seed \(model.spec.seed)")
            print("data           \(data): \(train.count) training samples of shape \(train.sampleShape)"
                  + (testSet.map { ", \($0.count) test samples" } ?? ", no test set"))
            if resume == nil, model.spec.preprocessing.isIdentity {
                let bytes = [.mnist, .idx].contains(format.format ?? DataFormat.guess(data))
                let fitted = try Standardizer.fit(train, scale: bytes ? 1.0 / 255 : 1)
                try model.setPreprocessing(Preprocessing(scale: fitted.scale, mean: fitted.mean, std: fitted.std))
                print("preprocessing  fitted on the training set: \(describe(model.spec.preprocessing))")
            } else {
                print("preprocessing  from the \(resume == nil ? "spec" : "checkpoint"): \(describe(model.spec.preprocessing))")
            }
            let first = model.epoch + 1
            print("training       epochs \(first) to \(epochs), batch \(batchSize)"
                  + (world.map { $0.size > 1 ? " per rank on \($0.size) MPI ranks (\(batchSize * $0.size) per step)" : "" } ?? ""))
            fflush(nil)

            var history = try resume.map { (path) throws(DLError) in try readHistory(path, upTo: model.epoch) } ?? []
            var seconds = 0.0, cpu = 0.0
            for e in first...epochs {
                let step = batchSize * (world?.size ?? 1)
                let bar = writes ? ProgressBar(label: "epoch \(e)/\(epochs)", total: (train.count + step - 1) / step) : nil
                let start = monotonicSeconds(), cpuStart = processCPUSeconds()
                var progress: ProgressHandler? = nil
                if let bar { progress = { (p: EpochProgress) throws(DLError) in bar.update(p) } }
                let result = try model.trainEpoch(on: train, batchSize: batchSize, progress: progress)
                let epochSeconds = monotonicSeconds() - start
                seconds += epochSeconds
                cpu += processCPUSeconds() - cpuStart
                bar?.finish()
                let onTrain = try model.evaluate(on: train)
                let onTest = try testSet.map { (set) throws(DLError) in try model.evaluate(on: set) }
                history.append(EpochRecord(epoch: result.epoch, trainLoss: result.meanLoss, trainAccuracy: onTrain.accuracy,
                                           testLoss: onTest?.loss, testAccuracy: onTest?.accuracy, seconds: epochSeconds))
                print("epoch \(e)/\(epochs)  loss \(fixed(result.meanLoss))  " + Self.summary(onTrain, onTest)
                      + "  \(fixed(epochSeconds, 2)) s")
                guard writes else { continue }
                try model.save(to: out)
                try writeTextFile(historyPath, historyCSV(history))
                try writeTextFile(curvePath, LearningCurve.svg(history, title: "\(name): \(optimizer), lr \(model.learningRate), batch \(batchSize), seed \(model.spec.seed)",
                                                               loss: model.spec.loss.type))
                fflush(nil)
            }
            print("saved          \(out) (history \(historyPath), learning curve \(curvePath))")
            print("time           training \(fixed(seconds, 2)) s wall, \(fixed(cpu, 2)) s CPU (evaluations excluded)")
        }
    }

    /// The model to train and its name: built from the spec, or loaded from --resume.
    private func start() throws(DLError) -> (any AnyModel, String) {
        switch (spec, resume) {
        case (let spec?, nil):
            let parsed = try SpecParser.parse(file: spec).with(seed: seed, learningRate: lr)
            return (try makeModel(spec: parsed), parsed.name.isEmpty ? spec : parsed.name)
        case (nil, let checkpoint?):
            guard seed == nil, lr == nil else {
                throw .invalid("--resume continues \(checkpoint) with its own seed and learning rate; --seed and --lr are for a new run")
            }
            let model = try loadModel(from: checkpoint)
            return (model, model.spec.name.isEmpty ? checkpoint : model.spec.name)
        case (nil, nil):
            throw .invalid("give a spec to train, or --resume CKPT to continue a checkpoint")
        case (_?, _?):
            throw .invalid("give a spec or --resume, not both (a checkpoint carries its spec)")
        }
    }

    /// "train 98.10% test 97.50% (loss 0.0812)" for a classifier; losses alone otherwise.
    static func summary(_ train: (loss: Double, accuracy: Double?), _ test: (loss: Double, accuracy: Double?)?) -> String {
        if let a = train.accuracy {
            let t = test.map { "  test \(fixed(100 * ($0.accuracy ?? 0), 2))% (loss \(fixed($0.loss)))" } ?? ""
            return "train \(fixed(100 * a, 2))%" + t
        }
        return "train loss \(fixed(train.loss))" + (test.map { "  test loss \(fixed($0.loss))" } ?? "")
    }

    /// Fails before any training when the checkpoint could not be written.
    private func checkWritable(_ path: String) throws(DLError) {
        guard !path.isEmpty else { throw .invalid("--out is empty") }
        guard !isDirectory(path) else { throw DLError(.io, "\(path): is a folder; --out names the checkpoint file to write") }
        let folder = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        guard access(folder.isEmpty ? "/" : folder, W_OK) == 0 else {
            throw DLError(.io, "\(path): cannot write into folder \(folder) (\(String(cString: strerror(errno))))")
        }
    }
}
