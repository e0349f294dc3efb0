/// Training and evaluation on a whole `Dataset`: the checks a data set needs (targets that
/// fit the model, samples of the model's input size) before the pointer-based `trainEpoch`
/// and `evaluate` see it. The command-line tool and the C ABI (`dl_train_epoch`,
/// `dl_evaluate_dataset`) go through these.
extension AnyModel {
    /// Throws `.invalidArgument` unless `data` holds at least one sample of exactly
    /// `inputSize` values; the message names both sizes and shapes.
    public func checkInput(_ data: Dataset) throws(DLError) {
        guard data.count > 0 else { throw .invalid("the data set holds no samples") }
        guard data.featureSize == inputSize else {
            throw .invalid("the data set's samples hold \(data.featureSize) values (shape \(data.sampleShape)), "
                           + "but the model's input takes \(inputSize) (shape \(inputShape))")
        }
    }

    /// Throws unless `data` has targets this model learns from: class labels for a
    /// classifier (`.unsupported` for another loss), or exactly `outputSize` values per
    /// sample (`.invalidArgument` otherwise). `purpose` names the use in messages.
    public func checkTargets(_ data: Dataset, for purpose: String) throws(DLError) {
        try data.checkTargets(for: purpose)
        if data.isLabelled, !isClassifier {
            throw DLError(.unsupported, "the data set holds class labels, but the model's \(spec.loss.type) loss needs "
                          + "target values (\(outputSize) per sample)")
        }
        if data.targetSize > 0, data.targetSize != outputSize {
            throw .invalid("the data set holds \(data.targetSize) target value\(data.targetSize == 1 ? "" : "s") per sample, "
                           + "but the model outputs \(outputSize) (shape \(outputShape))")
        }
    }

    /// One epoch of `trainEpoch(x:targets:count:batchSize:shuffle:progress:)` over every
    /// sample of `data`, whose targets and samples must fit the model.
    @discardableResult
    public func trainEpoch(on data: Dataset, batchSize: Int, shuffle: Bool = true,
                           progress: ProgressHandler? = nil) throws(DLError) -> EpochResult {
        try withTargets(data, for: "training") { (x, targets) throws(DLError) in
            try trainEpoch(x: x, targets: targets, count: data.count, batchSize: batchSize, shuffle: shuffle, progress: progress)
        }
    }

    /// Mean loss and, for a classifier, accuracy over every sample of `data`, whose targets
    /// and samples must fit the model; the model is not changed. `progress` is called after
    /// every chunk of samples (see `evaluate(x:count:targets:progress:)`).
    public func evaluate(on data: Dataset, progress: ProgressHandler? = nil) throws(DLError) -> (loss: Double, accuracy: Double?) {
        try withTargets(data, for: "evaluation") { (x, targets) throws(DLError) in
            try evaluate(x: x, count: data.count, targets: targets, progress: progress)
        }
    }

    /// Runs `body` on the features and targets of `data`, checked for `purpose`.
    private func withTargets<R>(_ data: Dataset, for purpose: String,
                                _ body: (UnsafePointer<Float>, BatchTargets<Float>) throws(DLError) -> R) throws(DLError) -> R {
        try checkTargets(data, for: purpose)
        try checkInput(data)
        return try data.withFeatures { (x) throws(DLError) in
            switch data.targets {
            case .labels(let labels):
                return try labels.withUnsafeBufferPointer { (y) throws(DLError) in try body(x.baseAddress!, .labels(y.baseAddress!)) }
            case .values(let values, _):
                return try values.withUnsafeBufferPointer { (y) throws(DLError) in try body(x.baseAddress!, .values(y.baseAddress!)) }
            case .none:
                throw DLError(.internal, "checkTargets let a data set without targets through")
            }
        }
    }
}
