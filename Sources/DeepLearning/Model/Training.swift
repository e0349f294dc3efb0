/// What one call of `trainEpoch` did.
public struct EpochResult: Sendable, Equatable {
    /// The model's `epoch` counter after this epoch (1 after a fresh model's first).
    public var epoch: Int
    /// Mean training loss over the epoch: each mini-batch's loss, taken before its update,
    /// weighted by the batch's size.
    public var meanLoss: Double
    /// Optimisation steps taken, ceil(count / batchSize).
    public var batches: Int
    /// Samples trained on: every sample once.
    public var samples: Int
}

/// Where a running epoch (or evaluation) stands, reported after every step (or chunk).
public struct EpochProgress: Sendable {
    public var batchesDone: Int
    public var batchCount: Int
    public var samplesDone: Int
    /// Mean loss of the batches so far, weighted by batch size.
    public var meanLoss: Double
    /// For a classifier, the samples so far classified right (by the forward pass of their
    /// training step, before its update; or by evaluation); nil for regression.
    public var samplesCorrect: Int? = nil
}

/// Called by `trainEpoch` after every step and by `evaluate` after every chunk; throwing
/// stops the call there (a caller's cancellation), with the work before it kept.
public typealias ProgressHandler = (EpochProgress) throws(DLError) -> Void

extension Model {
    /// One epoch of mini-batch training over a whole in-memory data set with targets.
    ///
    /// - `x`: `count * inputSize` raw values, sample after sample (the spec's preprocessing
    ///   is applied by `trainStep`, so pass pixels as they are); `targets`: `count` class
    ///   labels (a classifier), or `count * outputSize` values (regression, or one-hot/soft
    ///   rows for cross-entropy), shuffled with their samples.
    /// - With `shuffle`, the order is a Fisher-Yates permutation of 0..<count drawn from the
    ///   model's own generator (`rng`), starting each epoch from the identity. The order
    ///   therefore depends only on the generator's state, which checkpoints save: training
    ///   resumed from a checkpoint saved at an epoch boundary repeats, bit for bit, what the
    ///   uninterrupted run does. Without `shuffle`, batches are taken in order.
    /// - Every sample is used exactly once. The last batch keeps the remainder when
    ///   `batchSize` does not divide `count` (60,000 MNIST images in batches of 64 make 937
    ///   full batches and one of 32), unlike the tutorial's loop, which drops it. (A model
    ///   with `batch_norm` on flat input cannot train on a last batch of one sample.)
    /// - Shuffled batches are gathered row by row straight into the model's input buffer,
    ///   in the pass that applies the preprocessing (no separate copy).
    /// - `progress` is called after every step. When it throws, the epoch stops there and
    ///   rethrows: the steps before stay applied (the last one whole), `epoch` is not advanced
    ///   and the learning-rate decay not applied; the generator has drawn the epoch's order.
    ///
    /// Targets are checked before anything changes: a label outside the model's classes, a
    /// label for a model that is not a classifier or a non-finite target value throws and
    /// leaves the model as it was. Inputs are checked batch by batch, by `trainStep`
    /// (a whole-set check up front would cost a serial pass over all of `x` every epoch):
    /// a NaN or infinite input, like a loss that becomes non-finite (divergence), throws
    /// `.numeric` from the step that meets it; the steps before it stay applied and `epoch`
    /// is not advanced. On success `epoch` goes up by one. Specialized for float32, as
    /// `trainStep`.
    @discardableResult
    @_specialize(where T == Float)
    public func trainEpoch(x: UnsafePointer<Float>, targets: BatchTargets<Float>, count: Int, batchSize: Int,
                           shuffle: Bool = true, progress: ProgressHandler? = nil) throws(DLError) -> EpochResult {
        guard count > 0 else { throw .invalid("the number of samples must be at least 1, got \(count)") }
        guard count <= Int(Int32.max) else { throw .invalid("an epoch holds at most \(Int32.max) samples, got \(count)") }
        guard batchSize > 0 else { throw .invalid("batch size must be at least 1, got \(batchSize)") }
        _ = try checkedProduct(count, inputSize, "input of \(count) samples")
        let width = try checkEpochTargets(targets, count: count)
        if let d = distributedState {
            return try distributedEpoch(d, x: x, targets: targets, count: count, width: width, batchSize: batchSize,
                                        shuffle: shuffle, progress: progress)
        }

        let rows = min(batchSize, count)
        let batches = count / batchSize + (count % batchSize == 0 ? 0 : 1)   // ceil, without overflow
        let order = epochOrder(count: count, shuffle: shuffle)
        let gathered = shuffle ? GatheredTargets(rows: rows, width: width) : nil
        var lossSum = 0.0
        var done = 0, correct = 0
        let loader = shuffle && batches > 1 && backgroundLoading != false
            ? BatchLoader(model: self, rows: rows, always: backgroundLoading == true) : nil
        defer { loader?.stop() }
        loadedInBackground = loader != nil
        try order.withUnsafeBufferPointer { (order) throws(DLError) in
            loader?.request(x, rows: order.baseAddress!, count: rows)
            for b in 0..<batches {
                let n = min(batchSize, count - done)
                let value: Double
                if let gathered {
                    let picked = order.baseAddress! + done
                    let batchTargets = gathered.gather(targets, rows: picked, count: n)
                    // The rows of a shuffled batch are scattered over the whole set, each a
                    // miss to memory: the next batch's are fetched while this one trains,
                    // by the loader's thread or by the gather's request to the CPU.
                    let next = min(batchSize, count - done - n)
                    if let loader {
                        let input = try loader.wait(batch: n)
                        if next > 0 { loader.request(x, rows: picked + n, count: next) }
                        value = try trainStep(input: input, batch: n, targets: batchTargets)
                    } else {
                        value = try trainStep(x: x, rows: picked, batch: n, next: (picked + n, next), targets: batchTargets)
                    }
                } else {
                    value = try trainStep(x: x + done * inputSize, batch: n, targets: targets.advanced(by: done, width: width))
                }
                lossSum += value * Double(n)
                done += n
                if let c = lastStepCorrect { correct += c }
                try progress?(EpochProgress(batchesDone: b + 1, batchCount: batches, samplesDone: done,
                                            meanLoss: lossSum / Double(done),
                                            samplesCorrect: loss.isClassification ? correct : nil))
            }
        }
        epoch += 1      // the optimizer's per-epoch schedule moves on with it
        return EpochResult(epoch: epoch, meanLoss: lossSum / Double(count), batches: batches, samples: count)
    }
}

extension Model {
    /// The order of an epoch's `count` samples: 0..<count, or with `shuffle` a Fisher-Yates
    /// permutation of it drawn from the model's generator (which it advances).
    func epochOrder(count: Int, shuffle: Bool) -> [Int32] {
        var order = [Int32](unsafeUninitializedCapacity: count) { b, n in
            for i in 0..<count { b[i] = Int32(i) }
            n = count
        }
        if shuffle {
            var generator = rng
            order.withUnsafeMutableBufferPointer { generator.shuffle($0) }
            rng = generator
        }
        return order
    }

    /// The targets of a whole epoch checked before anything changes: class labels for a
    /// classifier, or finite values. Returns the values per sample (0 for labels).
    private func checkEpochTargets(_ targets: BatchTargets<Float>, count: Int) throws(DLError) -> Int {
        switch targets {
        case .labels(let labels):
            guard loss.isClassification else {
                throw DLError(.unsupported, "the \(loss.type) loss needs target values (\(outputSize) per sample), not class labels")
            }
            try checkLabels(labels, count: count, classes: outputSize)
            return 0
        case .values(let values):
            guard Kernels.allFinite(values, try checkedProduct(count, outputSize, "targets of \(count) samples")) else {
                throw DLError(.numeric, "the targets contain NaN or infinite values")
            }
            return outputSize
        }
    }
}

/// Room for one shuffled batch's targets, gathered from the epoch's in the batch's order.
final class GatheredTargets {
    private let labels: UnsafeMutablePointer<Int32>
    private let values: UnsafeMutablePointer<Float>
    /// Values per sample; 0 for labels.
    private let width: Int

    init(rows: Int, width: Int) {
        labels = .allocate(capacity: width == 0 ? rows : 0)
        values = .allocate(capacity: rows * width)
        self.width = width
    }

    deinit {
        labels.deallocate()
        values.deallocate()
    }

    /// The targets of samples `rows[0..<count]`, copied here in that order.
    func gather(_ targets: BatchTargets<Float>, rows: UnsafePointer<Int32>, count: Int) -> BatchTargets<Float> {
        switch targets {
        case .labels(let all):
            for i in 0..<count { labels[i] = all[Int(rows[i])] }
            return .labels(labels)
        case .values(let all):
            for i in 0..<count { (values + i * width).update(from: all + Int(rows[i]) * width, count: width) }
            return .values(values)
        }
    }
}

extension AnyModel {
    /// `Model.trainEpoch` for a model of either element type (`AnyModel` does not declare it).
    @discardableResult
    public func trainEpoch(x: UnsafePointer<Float>, targets: BatchTargets<Float>, count: Int, batchSize: Int,
                           shuffle: Bool = true, progress: ProgressHandler? = nil) throws(DLError) -> EpochResult {
        switch self {
        case let m as Model<Float>:
            return try m.trainEpoch(x: x, targets: targets, count: count, batchSize: batchSize, shuffle: shuffle, progress: progress)
        case let m as Model<Double>:
            return try m.trainEpoch(x: x, targets: targets, count: count, batchSize: batchSize, shuffle: shuffle, progress: progress)
        default:
            throw DLError(.internal, "trainEpoch: unexpected model type \(type(of: self))")
        }
    }
}
