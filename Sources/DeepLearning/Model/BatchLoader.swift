import CDeepLearningKernels

/// The next shuffled batch, gathered (and preprocessed, and checked) on a background thread
/// into one of two input tensors while the model trains on the other: `dlk_loader` in C.
/// Used by `trainEpoch` for float32 models when a CPU is left over by the kernels' threads;
/// the numbers are the same as when the training thread gathers each batch itself.
final class BatchLoader<T: DLScalar> {
    private let loader: OpaquePointer
    private let buffers: [Tensor<T>]
    private let sample: [Int]
    private let multiplier: Float, offset: Float, affine: Int32
    private let cols: Int
    private var next = 0

    /// Nil when the thread cannot be had, or (unless `always`) when it would have no CPU of
    /// its own: the kernels' threads take one each (with one CPU, or DL_NUM_THREADS as
    /// high as the CPUs, the training thread gathers, through those kernels).
    init?(model: Model<T>, rows: Int, always: Bool = false) {
        guard T.self == Float.self, always || dlk_available_cpus() > Int32(Kernels.threads),
              let a = try? Tensor<T>(shape: [rows] + model.inputShape),
              let b = try? Tensor<T>(shape: [rows] + model.inputShape),
              let loader = dlk_loader_start() else { return nil }
        self.loader = loader
        buffers = [a, b]
        sample = model.inputShape
        cols = model.inputSize
        let p = model.spec.preprocessing
        (multiplier, offset, affine) = (Float(p.multiplier), Float(p.offset), p.isIdentity ? 0 : 1)
    }

    /// Starts gathering rows `rows[0..<count]` of `x` into the next buffer.
    func request(_ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int) {
        let dst = UnsafeMutableRawPointer(buffers[next].data).assumingMemoryBound(to: Float.self)
        dlk_loader_request(loader, x, Int64(cols), rows, Int64(count), multiplier, offset, affine, dst)
    }

    /// The batch last requested, `batch` samples, once it is there.
    func wait(batch: Int) throws(DLError) -> Tensor<T> {
        let finite = dlk_loader_wait(loader) != 0
        let input = buffers[next]
        next = 1 - next
        guard finite else { throw DLError(.numeric, "the input contains NaN or infinite values") }
        try input.resize(batch: batch, sample: sample)
        return input
    }

    func stop() { dlk_loader_stop(loader) }
}
