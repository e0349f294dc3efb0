/// A labelled data set held in memory: `count` samples of `featureSize` floats each, and one
/// class label per sample.
///
/// The features are one contiguous, sample-major `[Float]` (sample `i` occupies
/// `features[i * featureSize ..< (i + 1) * featureSize]`), ready to pass to a model in
/// batches. Loaders keep values as stored (MNIST pixels stay 0...255); scaling and
/// standardization are a separate step, see `Standardizer`.
///
/// Loaders: `loadIDX(images:labels:)`, `loadMNIST(directory:split:)`, `loadCSV(_:featureCount:)`,
/// `loadHDF5(_:)`. Each refuses a missing, damaged or inconsistent file with a `DLError`
/// that names it.
public struct Dataset: Sendable {
    /// `count * featureSize` values, sample after sample.
    public internal(set) var features: [Float]
    /// One class index (>= 0) per sample.
    public let labels: [Int32]
    /// The shape of one sample: `[1, 28, 28]` for IDX images (channels, height, width),
    /// `[784]` for CSV rows.
    public let sampleShape: [Int]

    /// Number of samples.
    public var count: Int { labels.count }
    /// Number of values per sample, the product of `sampleShape`.
    public let featureSize: Int

    /// A data set from its parts. Throws `.invalidArgument` unless `sampleShape` has no zero
    /// dimension, `features` holds exactly `labels.count` samples of that shape, and every
    /// label is non-negative.
    public init(features: [Float], labels: [Int32], sampleShape: [Int]) throws(DLError) {
        guard !sampleShape.isEmpty, sampleShape.allSatisfy({ $0 > 0 }) else {
            throw .invalid("dataset sample shape \(sampleShape) must have at least one dimension, all positive")
        }
        let size = try checkedCount(sampleShape, "dataset sample shape \(sampleShape)")
        let total = try checkedProduct(labels.count, size, "dataset of \(labels.count) samples of shape \(sampleShape)")
        guard features.count == total else {
            throw .invalid("dataset of \(labels.count) samples of shape \(sampleShape) needs \(total) feature values, got \(features.count)")
        }
        if let i = labels.firstIndex(where: { $0 < 0 }) {
            throw .invalid("dataset label \(labels[i]) of sample \(i) is negative")
        }
        self.features = features
        self.labels = labels
        self.sampleShape = sampleShape
        self.featureSize = size
    }
}
