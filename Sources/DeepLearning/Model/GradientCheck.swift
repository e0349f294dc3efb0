/// Gradient checking in float64 by centred differences.
///
/// An entry passes when its analytical gradient a and numerical gradient
/// n = (f(p + e) - f(p - e)) / 2e agree as `torch.autograd.gradcheck` asks:
///
///     |a - n| <= atol + rtol |n|        (atol 1e-5, rtol 1e-3 by default)
///
/// and a parameter tensor passes when every checked entry does. The criterion stays
/// meaningful where the true gradient is zero (a convolution's bias before batch norm,
/// whose output does not depend on it): there both figures are rounding noise, of order
/// 1e-10, far inside atol, while the relative error below divides noise by noise. Each
/// tensor also reports, for reading, its largest absolute difference and its relative error
/// max|a - n| / max(max|a|, max|n|) (the scale floored at `floor`), whose tutorial bands are
/// < 1e-7 excellent, 1e-7..1e-5 good, 1e-5..1e-2 suspicious, > 1e-2 a bug only when the
/// gradient is not near zero; the verdict is the criterion's.
public enum GradientCheck {
    public static let floor = 1e-10
    public static let defaultEpsilon = 1e-5

    /// The per-entry tolerances of the criterion.
    public struct Tolerance: Sendable, Equatable {
        public var absolute: Double
        public var relative: Double

        /// PyTorch's gradcheck defaults: atol 1e-5, rtol 1e-3.
        public static let standard = Tolerance(valid: 1e-5, 1e-3)

        /// Throws unless both are finite and >= 0 and at least one is > 0.
        public init(absolute: Double, relative: Double) throws(DLError) {
            guard absolute.isFinite, relative.isFinite, absolute >= 0, relative >= 0, absolute > 0 || relative > 0 else {
                throw .invalid("gradient check tolerances must be finite and >= 0, not both 0; got atol \(absolute), rtol \(relative)")
            }
            (self.absolute, self.relative) = (absolute, relative)
        }

        private init(valid absolute: Double, _ relative: Double) { (self.absolute, self.relative) = (absolute, relative) }
    }

    /// The result for one tensor.
    public struct Entry: Sendable {
        public var name: String
        /// max|a - n| / max(max|a|, max|n|, floor): for reading, misleading where the gradient is zero.
        public var relativeError: Double
        /// max|a - n| over the checked entries.
        public var maxAbsoluteDifference: Double
        /// max over the checked entries of |a - n| / (atol + rtol |n|): at most 1 passes.
        public var score: Double
        /// Every checked entry within tolerance (`score <= 1`).
        public var passed: Bool { score <= 1 }
        /// How many of the tensor's entries were perturbed.
        public var checked: Int
    }

    /// Relative error of analytical `a` against numerical `n` (equal lengths).
    public static func relativeError(_ a: [Double], _ n: [Double]) -> (relative: Double, absolute: Double) {
        var diff = 0.0, scale = 0.0
        for (x, y) in zip(a, n) {
            diff = Swift.max(diff, abs(x - y))
            scale = Swift.max(scale, abs(x), abs(y))
        }
        return (diff / Swift.max(scale, floor), diff)
    }

    /// The criterion's score of analytical `a` against numerical `n`: the largest
    /// |a - n| / (atol + rtol |n|), 0 where they are equal; NaN anywhere gives NaN (fails).
    public static func score(_ a: [Double], _ n: [Double], _ tolerance: Tolerance) -> Double {
        var worst = 0.0
        for (x, y) in zip(a, n) {
            let diff = abs(x - y)
            let ratio = diff == 0 ? 0 : diff / (tolerance.absolute + tolerance.relative * abs(y))
            if !(ratio <= worst) { worst = ratio }      // keeps a NaN once seen
            if worst.isNaN { break }
        }
        return worst
    }

    /// Which entries of a tensor of `count` elements to perturb: all of them, or `limit`
    /// spread evenly when `limit` is positive and smaller.
    public static func indices(count: Int, limit: Int) -> [Int] {
        guard limit > 0, count > limit else { return Array(0..<count) }
        return (0..<limit).map { $0 * count / limit }
    }

    /// Checks `values`' analytical gradient `grad` against centred differences of `f`,
    /// perturbing the chosen entries in place and restoring them.
    public static func check(name: String, values: UnsafeMutablePointer<Double>, grad: UnsafePointer<Double>, count: Int,
                             limit: Int, epsilon: Double, tolerance: Tolerance = .standard,
                             _ f: () throws(DLError) -> Double) throws(DLError) -> Entry {
        let chosen = indices(count: count, limit: limit)
        var analytical: [Double] = [], numerical: [Double] = []
        analytical.reserveCapacity(chosen.count)
        numerical.reserveCapacity(chosen.count)
        for i in chosen {
            let saved = values[i]
            values[i] = saved + epsilon
            let plus = try f()
            values[i] = saved - epsilon
            let minus = try f()
            values[i] = saved
            numerical.append((plus - minus) / (2 * epsilon))
            analytical.append(grad[i])
        }
        let (relative, absolute) = relativeError(analytical, numerical)
        return Entry(name: name, relativeError: relative, maxAbsoluteDifference: absolute,
                     score: score(analytical, numerical, tolerance), checked: chosen.count)
    }
}

extension Model where T == Double {
    /// Checks every parameter's gradient of the model's loss on one batch, in training mode.
    ///
    /// One unfrozen forward pass draws the dropout masks; the generator is then frozen so the
    /// analytical pass and every numerical pass replay them. Batch norm uses the batch's
    /// statistics; its running statistics change only when a train step is accepted, so they
    /// stay as they were. The generator is restored afterwards: the model is left as it was.
    ///
    /// - Parameter limit: entries perturbed per parameter tensor (0 = all of them). Each
    ///   perturbed entry costs two forward passes.
    /// - Returns: one entry per parameter, in `parameters` order.
    public func checkGradients<S: DLScalar>(x: UnsafePointer<S>, batch: Int, targets: BatchTargets<S>,
                                           limit: Int = 0, epsilon: Double = GradientCheck.defaultEpsilon,
                                           tolerance: GradientCheck.Tolerance = .standard) throws(DLError) -> [GradientCheck.Entry] {
        let savedGenerator = rng
        defer {
            random.frozen = false
            rng = savedGenerator
        }
        _ = try lossValue(x: x, batch: batch, targets: targets, training: true)
        random.frozen = true
        let value = try lossAndGradients(x: x, batch: batch, targets: targets, training: true)
        guard value.isFinite else {
            throw DLError(.numeric, "the loss is \(value) on this batch; gradients cannot be checked")
        }
        // Gradients are overwritten by nothing below: f runs forward passes only.
        var entries: [GradientCheck.Entry] = []
        for p in parameters {
            defer { p.changed() }   // perturbed in place (and put back)
            let analytical = p.grad.array
            let entry = try analytical.withUnsafeBufferPointer { (g) throws(DLError) -> GradientCheck.Entry in
                try GradientCheck.check(name: p.name, values: p.value.data, grad: g.baseAddress!, count: p.value.count,
                                        limit: limit, epsilon: epsilon, tolerance: tolerance) { () throws(DLError) -> Double in
                    try lossValue(x: x, batch: batch, targets: targets, training: true)
                }
            }
            entries.append(entry)
        }
        return entries
    }
}
