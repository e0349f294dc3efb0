/// Feature scaling as the MNIST recipe does it: multiply by `scale` (1/255 for bytes), then
/// subtract `mean` and divide by `std`, the global mean and standard deviation of the
/// *scaled* training features (one pair for all features, not one per feature).
///
///     var train = try Dataset.loadMNIST(directory: dir, split: .train)
///     var test = try Dataset.loadMNIST(directory: dir, split: .test)
///     let standardizer = try Standardizer.fit(train, scale: 1.0 / 255)
///     standardizer.apply(to: &train)
///     standardizer.apply(to: &test)     // the training set's statistics, for both splits
public struct Standardizer: Sendable, Equatable {
    /// Applied first, to the raw values.
    public var scale: Double
    /// Mean of the scaled training features.
    public var mean: Double
    /// Population standard deviation (NumPy's default `std()`) of the scaled training features.
    public var std: Double

    /// A standardizer with known statistics. Throws `.invalidArgument` unless the three obey
    /// the value rules of a model's preprocessing (`Preprocessing.validate`: scale and std
    /// in [1e-12, 1e12], mean in [-1e12, 1e12]), so that a model given them can be saved and
    /// loaded again.
    public init(scale: Double = 1, mean: Double, std: Double) throws(DLError) {
        try Preprocessing(scale: scale, mean: mean, std: std).validate(path: "standardizer")
        self.scale = scale
        self.mean = mean
        self.std = std
    }

    /// The smallest std `fit` returns: the rules' least std. A set whose scaled values vary
    /// less gets this floor instead of its own std (as Keras's Normalization floors the std
    /// at its epsilon), which the rules accept, rather than a std no model could be saved with.
    public static let minimumStd = Preprocessing.stdRange.lowerBound

    /// Fits mean and std over every feature value of `data` after multiplying by `scale`.
    /// Labels, if any, play no part. A std below `minimumStd` is raised to it. Throws
    /// `.invalidArgument` for a `scale` outside the value rules, an empty data set, one
    /// whose features are all equal (nothing to standardize), or one whose scaled mean or
    /// std lies beyond the rules (|mean| or std above 1e12: choose a smaller scale).
    public static func fit(_ data: Dataset, scale: Double = 1) throws(DLError) -> Standardizer {
        guard scale.isFinite, Preprocessing.scaleRange.contains(scale) else {
            throw .invalid("standardizer scale: expected \(OptionKind.number(Preprocessing.scaleRange).expectation), got \(scale)")
        }
        guard data.count > 0 else { throw .invalid("cannot fit a standardizer to an empty data set") }
        // Two passes in Double: the mean, then the squared deviations from it (no cancellation).
        let (mean, variance, first) = data.withFeatures { x -> (Double, Double, Float) in
            let mean = sum(x) { Double($0) } / Double(x.count)
            let rawMean = mean
            return (mean, sum(x) { let d = Double($0) - rawMean; return d * d } / Double(x.count), x[0])
        }
        guard variance > 0 else {
            throw .invalid("cannot standardize: all \(data.count * data.featureSize) feature values are equal (\(first))")
        }
        let std = Swift.max(variance.squareRoot() * scale, minimumStd)
        return try Standardizer(scale: scale, mean: mean * scale, std: std)
    }

    /// Replaces every feature x of `data` by (x * scale - mean) / std.
    public func apply(to data: inout Dataset) {
        // One multiply-add per value, the coefficients folded in Double.
        let a = Float(scale / std)
        let b = Float(-mean / std)
        data.withMutableFeatures { x in
            guard let p = x.baseAddress else { return }
            for i in 0..<x.count { p[i] = p[i] * a + b }
        }
    }

    /// Sum of f over x with four independent Double accumulators, so the loop pipelines.
    private static func sum(_ x: UnsafeBufferPointer<Float>, _ f: (Float) -> Double) -> Double {
        var s = (0.0, 0.0, 0.0, 0.0)
        let n = x.count
        var i = 0
        while i + 4 <= n {
            s.0 += f(x[i]); s.1 += f(x[i + 1]); s.2 += f(x[i + 2]); s.3 += f(x[i + 3])
            i += 4
        }
        while i < n { s.0 += f(x[i]); i += 1 }
        return (s.0 + s.1) + (s.2 + s.3)
    }
}
