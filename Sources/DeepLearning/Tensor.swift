import CDeepLearningKernels
import Glibc

/// A contiguous, row-major array of `T` with a shape.
///
/// A tensor is a reference type that owns its memory. `resize(_:)` reuses the allocation
/// when the new shape fits, so layers keep one output buffer across training steps, and
/// a parameter's `data` pointer never moves for the life of its model (the Python
/// bindings expose parameters as NumPy views of it).
///
/// Its properties change only in `resize`, which never runs inside an access to them, so
/// they carry no run-time exclusivity checks: every kernel reads `data`, `shape` and
/// `count`, and the checks cost about 10% of the instructions of a single-sample prediction.
public final class Tensor<T: DLScalar> {
    @exclusivity(unchecked) public private(set) var shape: [Int]
    @exclusivity(unchecked) public private(set) var count: Int
    @exclusivity(unchecked) public private(set) var data: UnsafeMutablePointer<T>
    @exclusivity(unchecked) private var capacity: Int

    /// A zero-filled tensor. Throws when the size overflows or exceeds `Limits`.
    public init(shape: [Int]) throws(DLError) {
        let n = try checkedCount(shape, "tensor of shape \(shape)")
        self.shape = shape
        self.count = n
        self.capacity = max(n, 1)
        self.data = try Tensor.allocate(capacity)
        memset(data, 0, capacity * MemoryLayout<T>.stride)
    }

    /// A tensor holding `values`, which must have exactly as many elements as `shape`.
    public convenience init(shape: [Int], values: [T]) throws(DLError) {
        try self.init(shape: shape)
        guard values.count == count else {
            throw .invalid("tensor of shape \(shape) needs \(count) values, got \(values.count)")
        }
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { memcpy(data, base, count * MemoryLayout<T>.stride) }
        }
    }

    deinit { free(data) }

    private static func allocate(_ n: Int) throws(DLError) -> UnsafeMutablePointer<T> {
        // Allocation goes through posix_memalign so that a refusal is an error, not a trap.
        let (bytes, overflow) = n.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, let raw = alignedAllocation(bytes) else {
            throw DLError(.noMemory, "out of memory allocating \(n) \(T.dtypeName) values")
        }
        return raw.bindMemory(to: T.self, capacity: n)
    }

    /// Changes the shape, reusing the allocation when it is large enough. Contents are
    /// unspecified afterwards unless the element count is unchanged.
    public func resize(_ newShape: [Int]) throws(DLError) {
        if newShape == shape { return }
        let n = try checkedCount(newShape, "tensor of shape \(newShape)")
        if n > capacity {
            let fresh = try Tensor.allocate(n)
            memset(fresh, 0, n * MemoryLayout<T>.stride)
            free(data)
            data = fresh
            capacity = n
        }
        shape = newShape
        count = n
    }

    /// Resizes to `[batch] + sample`, allocating nothing when that is already the shape (the
    /// case on every training step after the first).
    public func resize(batch: Int, sample: [Int]) throws(DLError) {
        if shape.count == sample.count + 1, shape[0] == batch {
            var same = true
            for i in 0..<sample.count where shape[i + 1] != sample[i] { same = false }
            if same { return }
        }
        try resize([batch] + sample)
    }

    /// The elements as an array (a copy).
    public var array: [T] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Copies `other`'s elements (up to this tensor's count) into this tensor (`dlk_copy`,
    /// not memcpy: see dl_kernels.h).
    public func copy(from other: Tensor<T>) {
        dlk_copy(data, other.data, Int64(min(count, other.count) * MemoryLayout<T>.stride))
    }

    /// Sets every element to zero. (memset and memcpy are exact for IEEE floats and avoid
    /// generic per-element copies in unspecialised code.)
    public func zero() { memset(data, 0, count * MemoryLayout<T>.stride) }
}

