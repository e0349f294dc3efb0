/// Training and evaluation on a whole `Dataset`: the checks a data set needs (labels,
/// samples of the model's input size) before the pointer-based `trainEpoch` and
/// `evaluate` see it. The command-line tool and the C ABI (`dl_train_epoch`,
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

    /// One epoch of `trainEpoch(x:labels:count:batchSize:shuffle:progress:)` over every
    /// sample of `data`, which must be labelled and fit the model's input.
    @discardableResult
    public func trainEpoch(on data: Dataset, batchSize: Int, shuffle: Bool = true,
                           progress: ((EpochProgress) -> Void)? = nil) throws(DLError) -> EpochResult {
        let labels = try data.labels(for: "training")
        try checkInput(data)
        return try data.features.withUnsafeBufferPointer { (x) throws(DLError) in
            try labels.withUnsafeBufferPointer { (y) throws(DLError) in
                try trainEpoch(x: x.baseAddress!, labels: y.baseAddress!, count: data.count, batchSize: batchSize,
                               shuffle: shuffle, progress: progress)
            }
        }
    }

    /// Mean loss and accuracy over every sample of `data`, which must be labelled and fit
    /// the model's input; the model is not changed.
    public func evaluate(on data: Dataset) throws(DLError) -> (loss: Double, accuracy: Double?) {
        let labels = try data.labels(for: "evaluation")
        try checkInput(data)
        return try data.features.withUnsafeBufferPointer { (x) throws(DLError) in
            try labels.withUnsafeBufferPointer { (y) throws(DLError) in
                try evaluate(x: x.baseAddress!, count: data.count, targets: .labels(y.baseAddress!))
            }
        }
    }
}
