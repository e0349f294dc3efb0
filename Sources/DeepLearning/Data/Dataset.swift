/// A data set held in memory: `count` samples of `featureSize` floats each and, when it is
/// labelled, one class label per sample.
///
/// The features are one contiguous, sample-major `[Float]` (sample `i` occupies
/// `features[i * featureSize ..< (i + 1) * featureSize]`), ready to pass to a model in
/// batches. Loaders keep values as stored (MNIST pixels stay 0...255); scaling and
/// standardization are a separate step, see `Standardizer`.
///
/// An unlabelled set (`isLabelled` false, `labels` empty) serves for prediction and for
/// fitting a `Standardizer`; training and evaluation refuse it (`labels(for:)`).
///
/// Loaders: `loadIDX(images:labels:)`, `loadMNIST(directory:split:)`, `loadCSV(_:featureCount:)`,
/// `loadHDF5(_:)`. Each refuses a missing, damaged or inconsistent file with a `DLError`
/// that names it.
public struct Dataset: Sendable {
    /// `count * featureSize` values, sample after sample.
    public internal(set) var features: [Float]
    /// One class index (>= 0) per sample; empty when the set is unlabelled.
    public let labels: [Int32]
    /// Whether every sample has a label (`labels.count == count`).
    public let isLabelled: Bool
    /// The shape of one sample: `[1, 28, 28]` for IDX images (channels, height, width),
    /// `[784]` for CSV rows.
    public let sampleShape: [Int]

    /// Number of samples, counted from the features (so an unlabelled set knows it too).
    public let count: Int
    /// Number of values per sample, the product of `sampleShape`.
    public let featureSize: Int

    /// A data set from its parts; `labels` nil makes it unlabelled. Throws
    /// `.invalidArgument` unless `sampleShape` has no zero dimension, `features` holds a
    /// whole number of samples of that shape (exactly `labels.count` of them when labelled),
    /// and every label is non-negative.
    public init(features: [Float], labels: [Int32]?, sampleShape: [Int]) throws(DLError) {
        guard !sampleShape.isEmpty, sampleShape.allSatisfy({ $0 > 0 }) else {
            throw .invalid("dataset sample shape \(sampleShape) must have at least one dimension, all positive")
        }
        let size = try checkedCount(sampleShape, "dataset sample shape \(sampleShape)")
        if let labels {
            let total = try checkedProduct(labels.count, size, "dataset of \(labels.count) samples of shape \(sampleShape)")
            guard features.count == total else {
                throw .invalid("dataset of \(labels.count) samples of shape \(sampleShape) needs \(total) feature values, got \(features.count)")
            }
            if let i = labels.firstIndex(where: { $0 < 0 }) {
                throw .invalid("dataset label \(labels[i]) of sample \(i) is negative")
            }
        } else if features.count % size != 0 {
            throw .invalid("unlabelled dataset of \(features.count) feature values is not a whole number of samples of shape \(sampleShape) (\(size) values each)")
        }
        self.features = features
        self.labels = labels ?? []
        self.isLabelled = labels != nil
        self.sampleShape = sampleShape
        self.featureSize = size
        self.count = features.count / size
    }

    /// The labels, for training or evaluation (`purpose`, as in "training needs class
    /// labels"); throws `.invalidArgument` for an unlabelled set.
    public func labels(for purpose: String) throws(DLError) -> [Int32] {
        guard isLabelled else {
            throw .invalid("the data set is unlabelled (\(count) samples, no labels); \(purpose) needs class labels")
        }
        return labels
    }
}
