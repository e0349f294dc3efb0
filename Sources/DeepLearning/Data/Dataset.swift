/// A data set held in memory: `count` samples of `featureSize` floats each and, when the
/// file had them, a target per sample: a class label (classification) or `targetSize`
/// values (regression, or one-hot/soft rows for cross-entropy).
///
/// The features are one contiguous, sample-major run of floats (sample `i` occupies
/// `[i * featureSize ..< (i + 1) * featureSize]`), ready to pass to a model in batches;
/// value targets are laid out the same way. A loaded set owns its features; a set made
/// with `init(borrowing:targets:sampleShape:release:)` reads a caller's memory in place
/// (the C ABI's `dl_dataset_borrow_arrays`, Python's `Dataset.from_arrays`), and copies it
/// only if it is changed (`Standardizer.apply`). Loaders keep values as stored (MNIST
/// pixels stay 0...255); scaling and standardization are a separate step, see `Standardizer`.
///
/// A set without targets serves for prediction and for fitting a `Standardizer`; training
/// and evaluation refuse it (`checkTargets(for:)`).
///
/// Loaders: `loadIDX(images:labels:)`, `loadMNIST(directory:split:)`,
/// `loadCSV(_:featureCount:targetCount:)`, `loadHDF5(_:)`. Each refuses a missing, damaged
/// or inconsistent file with a `DLError` that names it.
public struct Dataset: Sendable {
    /// What a data set holds besides its features.
    public enum Targets: Sendable, Equatable {
        /// No targets: for prediction only.
        case none
        /// One class index (>= 0) per sample.
        case labels([Int32])
        /// `size` values per sample, sample after sample.
        case values([Float], size: Int)
    }

    /// `count * featureSize` values, sample after sample: a copy for a set that borrows its
    /// features. The library reads them through `withFeatures(_:)`, which never copies.
    public var features: [Float] {
        switch storage {
        case .owned(let values): return values
        case .borrowed(let memory): return Array(memory.values)
        }
    }

    /// Whether the features are a caller's memory, read in place.
    public var isBorrowed: Bool {
        if case .borrowed = storage { return true }
        return false
    }

    private var storage: FeatureStorage
    /// The samples' targets.
    public let targets: Targets
    /// The shape of one sample: `[1, 28, 28]` for IDX images (channels, height, width),
    /// `[784]` for CSV rows.
    public let sampleShape: [Int]

    /// Number of samples, counted from the features (so a set without targets knows it too).
    public let count: Int
    /// Number of values per sample, the product of `sampleShape`.
    public let featureSize: Int

    /// The class labels; empty unless the set holds labels.
    public var labels: [Int32] {
        if case .labels(let labels) = targets { return labels }
        return []
    }

    /// Whether every sample has a class label.
    public var isLabelled: Bool {
        if case .labels = targets { return true }
        return false
    }

    /// The value targets, `count * targetSize` floats; empty unless the set holds values.
    public var targetValues: [Float] {
        if case .values(let values, _) = targets { return values }
        return []
    }

    /// Values per sample of value targets; 0 for labels or none.
    public var targetSize: Int {
        if case .values(_, let size) = targets { return size }
        return 0
    }

    /// A data set from its parts; `labels` nil makes it a set without targets. Throws
    /// `.invalidArgument` unless `sampleShape` has no zero dimension, `features` holds a
    /// whole number of samples of that shape (exactly `labels.count` of them when labelled),
    /// and every label is non-negative.
    public init(features: [Float], labels: [Int32]?, sampleShape: [Int]) throws(DLError) {
        try self.init(features: features, targets: labels.map { .labels($0) } ?? .none, sampleShape: sampleShape)
    }

    /// A data set from its parts. Throws `.invalidArgument` unless `sampleShape` has no
    /// zero dimension, `features` holds a whole number of samples of that shape, the
    /// targets hold one entry per sample (labels non-negative; values finite, `size` >= 1).
    public init(features: [Float], targets: Targets, sampleShape: [Int]) throws(DLError) {
        try self.init(.owned(features), count: features.count, targets: targets, sampleShape: sampleShape)
    }

    /// A data set that reads `features` in place instead of copying them, with the same
    /// checks as `init(features:targets:sampleShape:)`. The memory must stay valid and
    /// unchanged while any copy of the set exists; `release` runs once when the last copy
    /// is gone (and, if this throws, before it returns), so the caller can free it then.
    public init(borrowing features: UnsafeBufferPointer<Float>, targets: Targets, sampleShape: [Int],
                release: (@Sendable () -> Void)? = nil) throws(DLError) {
        let memory = BorrowedFeatures(features, release: release)
        try self.init(.borrowed(memory), count: features.count, targets: targets, sampleShape: sampleShape)
    }

    private init(_ storage: FeatureStorage, count values: Int, targets: Targets, sampleShape: [Int]) throws(DLError) {
        guard !sampleShape.isEmpty, sampleShape.allSatisfy({ $0 > 0 }) else {
            throw .invalid("dataset sample shape \(sampleShape) must have at least one dimension, all positive")
        }
        let size = try checkedCount(sampleShape, "dataset sample shape \(sampleShape)")
        switch targets {
        case .none:
            guard values % size == 0 else {
                throw .invalid("dataset of \(values) feature values is not a whole number of samples of shape \(sampleShape) (\(size) values each)")
            }
        case .labels(let labels):
            try Self.check(features: values, samples: labels.count, size, sampleShape)
            if let i = labels.firstIndex(where: { $0 < 0 }) {
                throw .invalid("dataset label \(labels[i]) of sample \(i) is negative")
            }
        case .values(let targetValues, let width):
            guard width >= 1, targetValues.count % width == 0 else {
                throw .invalid("dataset target values (\(targetValues.count)) must be a whole number of rows of at least 1 value, got rows of \(width)")
            }
            try Self.check(features: values, samples: targetValues.count / width, size, sampleShape)
            if let i = targetValues.firstIndex(where: { !$0.isFinite }) {
                throw .invalid("dataset target \(targetValues[i]) of sample \(i / width) is not finite")
            }
        }
        self.storage = storage
        self.targets = targets
        self.sampleShape = sampleShape
        self.featureSize = size
        self.count = values / size
    }

    /// Runs `body` on the features, in place.
    public func withFeatures<R, E: Error>(_ body: (UnsafeBufferPointer<Float>) throws(E) -> R) throws(E) -> R {
        switch storage {
        case .owned(let values):
            return try values.withUnsafeBufferPointer { (x) throws(E) in try body(x) }
        case .borrowed(let memory):
            return try body(memory.values)
        }
    }

    /// Runs `body` on the features for changing them in place; borrowed features are
    /// copied first (the caller's memory is never written).
    public mutating func withMutableFeatures<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        var values: [Float]
        switch storage {
        case .owned(let owned): values = owned
        case .borrowed(let memory): values = Array(memory.values)
        }
        storage = .owned([])        // leaves `values` the array's only reference: no copy on write
        let result = values.withUnsafeMutableBufferPointer { body($0) }
        storage = .owned(values)
        return result
    }

    /// Throws unless `features` values are exactly `samples` samples of `size` values.
    private static func check(features: Int, samples: Int, _ size: Int, _ shape: [Int]) throws(DLError) {
        let total = try checkedProduct(samples, size, "dataset of \(samples) samples of shape \(shape)")
        guard features == total else {
            throw .invalid("dataset of \(samples) samples of shape \(shape) needs \(total) feature values, got \(features)")
        }
    }

    /// Throws `.invalidArgument` for a set without targets: `purpose` ("training",
    /// "evaluation") needs labels or target values.
    public func checkTargets(for purpose: String) throws(DLError) {
        guard targets != .none else {
            throw .invalid("the data set is unlabelled (\(count) samples, no labels or target values); "
                           + "\(purpose) needs class labels or target values")
        }
    }

    /// The labels, for training or evaluation (`purpose`, as in "training needs class
    /// labels"); throws `.invalidArgument` for a set without labels.
    public func labels(for purpose: String) throws(DLError) -> [Int32] {
        guard isLabelled else {
            throw .invalid("the data set is unlabelled (\(count) samples, no labels); \(purpose) needs class labels")
        }
        return labels
    }
}

/// Where a data set's features live.
private enum FeatureStorage: Sendable {
    case owned([Float])
    case borrowed(BorrowedFeatures)
}

/// A caller's memory a data set reads in place; `release` runs when the last data set
/// sharing it is gone.
private final class BorrowedFeatures: @unchecked Sendable {
    // @unchecked: the memory is only read, and `release` runs once, from deinit.
    let values: UnsafeBufferPointer<Float>
    private let release: (@Sendable () -> Void)?

    init(_ values: UnsafeBufferPointer<Float>, release: (@Sendable () -> Void)?) {
        self.values = values
        self.release = release
    }

    deinit { release?() }
}
