import Glibc

extension Dataset {
    /// Loads a data set from an HDF5 file holding a dataset `x`, shape `(N, ...)`, of floats
    /// (any width) or unsigned bytes, and optionally `y`: integers of shape `(N,)` are class
    /// labels >= 0, floats of shape `(N,)` or `(N, k)` are target values (k per sample);
    /// without `y` the set has no targets. `sampleShape` is x's shape without its first
    /// dimension; bytes become floats 0...255. (h5py writes this layout with
    /// `f["x"] = images; f["y"] = labels`.)
    ///
    /// The file is read by a child process (see `HDF5Image`): a crafted file that crashes
    /// or hangs libhdf5 is refused within the load deadline, and every size it claims is
    /// checked against what the file holds before anything of that size is allocated.
    public static func loadHDF5(_ path: String) throws(DLError) -> Dataset {
        let file = try HDF5Image(path: path, roots: ["x", "y"], recursive: false)
        let x = try file.describe("x")
        guard x.shape.count >= 2 else {
            throw DLError(.format, "\(path): dataset x has shape \(x.shape); expected (samples, features...), at least 2 dimensions")
        }
        guard x.shape[0] > 0 else { throw DLError(.format, "\(path): x holds no samples") }
        let byte = try file.integerLayout("x")
        guard x.isFloat || (byte?.size == 1 && byte?.isSigned == false) else {
            let what = byte.map { "\($0.size * 8)-bit \($0.isSigned ? "signed" : "unsigned") integers" } ?? x.typeClass
            throw DLError(.format, "\(path): dataset x holds \(what); expected floats or unsigned bytes (uint8)")
        }
        let targets = file.exists("y") ? try readTargets(file, path, samples: x.shape[0]) : .none

        // The reader has read x's values already (its size checked against the file's),
        // so the array below is of a size the file holds.
        let count = try checkedCount(x.shape, "\(path): dataset x of shape \(x.shape)")
        try probeAllocation(count, MemoryLayout<Float>.stride, path)
        let features = try [Float](unsafeUninitializedCapacity: count) { (buffer, initialized) throws(DLError) in
            try file.read("x", into: buffer.baseAddress!, count: count)
            initialized = count
        }
        if x.isFloat, let i = features.firstIndex(where: { !$0.isFinite }) {
            throw DLError(.format, "\(path): dataset x holds \(features[i]) in sample \(i / (count / x.shape[0])); values must be finite")
        }
        return try Dataset(features: features, targets: targets, sampleShape: Array(x.shape.dropFirst()))
    }

    /// Dataset `y` of `file`: integer class labels or float target values for x's `samples`.
    private static func readTargets(_ file: HDF5Image, _ path: String, samples: Int) throws(DLError) -> Targets {
        let y = try file.describe("y")
        guard !y.shape.isEmpty, samples == y.shape[0] else {
            throw DLError(.format, "\(path): x holds \(samples) samples but y has shape \(y.shape); "
                          + "expected (\(samples),) labels or (\(samples), outputs) target values")
        }
        if y.isFloat {
            guard y.shape.count <= 2 else {
                throw DLError(.format, "\(path): dataset y has shape \(y.shape); target values need (samples,) or (samples, outputs)")
            }
            let width = y.shape.count == 2 ? y.shape[1] : 1
            let count = try checkedCount(y.shape, "\(path): dataset y of shape \(y.shape)")
            try probeAllocation(count, MemoryLayout<Float>.stride, path)
            let values = try [Float](unsafeUninitializedCapacity: count) { (buffer, initialized) throws(DLError) in
                try file.read("y", into: buffer.baseAddress!, count: count)
                initialized = count
            }
            if let i = values.firstIndex(where: { !$0.isFinite }) {
                throw DLError(.format, "\(path): dataset y holds \(values[i]) in sample \(i / width); values must be finite")
            }
            return .values(values, size: width)
        }
        guard y.shape.count == 1 else {
            throw DLError(.format, "\(path): dataset y has shape \(y.shape); class labels need (samples,), one label per sample")
        }
        guard try file.integerLayout("y") != nil else {
            throw DLError(.format, "\(path): dataset y holds \(y.typeClass) values; expected integer class labels or float target values")
        }
        // Labels of any integer width, each as stored (an unsigned one above Int64.max is nil).
        let values = try file.readIntegers("y", count: y.shape[0])
        var labels = [Int32]()
        labels.reserveCapacity(values.count)
        for (i, v) in values.enumerated() {
            guard let v, v >= 0, v <= Int64(Int32.max) else {
                let shown = v.map { "\($0)" } ?? "above \(Int64.max)"
                throw DLError(.format, "\(path): label \(shown) of sample \(i) in y is outside 0...\(Int32.max)")
            }
            labels.append(Int32(v))
        }
        return .labels(labels)
    }
}

/// Throws `.noMemory` when `count` elements of `stride` bytes cannot be allocated now: a
/// Swift array of that size would end the process instead.
func probeAllocation(_ count: Int, _ stride: Int, _ path: String) throws(DLError) {
    let (bytes, overflow) = count.multipliedReportingOverflow(by: stride)
    guard !overflow, let p = malloc(max(bytes, 1)) else {
        throw DLError(.noMemory, "\(path): out of memory for \(count) values")
    }
    free(p)
}
