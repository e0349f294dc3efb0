/// Data-parallel training: one model on several processes ("ranks"), each holding a copy,
/// kept identical by summing what every training step computes across the ranks.
///
/// The library does no communication itself: a `GradientReducer` does (MPI's
/// `MPI_Allreduce`, NCCL, or anything that sums a buffer element-wise across the ranks, in
/// place). With a reducer set, each training step
///
/// 1. runs forward and backward on this rank's samples (its shard), as usual;
/// 2. packs, into one contiguous buffer the model owns (allocated once, reused):
///    every parameter's gradient multiplied by the local sample count (a sum over the local
///    samples rather than their mean), in parameter order and in each parameter's storage
///    order (opaque, but identical on every rank of one spec); then, per `batch_norm`
///    layer, its proposed running mean and variance times the local sample count; then the
///    trailer: local loss sum, correctly classified samples, local sample count, the number
///    of failed ranks (1 when this rank failed before the reduction), and of those failed
///    with a numeric error;
/// 3. calls the reducer once on that buffer, in the model's element type;
/// 4. divides by the global sample count and unpacks; clipping, the non-finite check and
///    the optimizer's update then run on the global gradient, the same float operations on
///    the same numbers on every rank, so the ranks' parameters stay bit-identical.
///
/// A rank that fails before the reduction (a NaN input, a non-finite loss, a bad label)
/// still takes part in it with its failure flag set, so no rank is left waiting: every rank
/// then throws (the failing one its own error, the others one naming the failure), and no
/// rank changes anything. Batch norm uses each rank's own batch statistics in the forward
/// pass (as PyTorch's DistributedDataParallel without SyncBatchNorm); its running
/// statistics become the sample-weighted mean of the ranks' updates, identical everywhere.
/// Dropout draws its masks from a stream of this step and rank: one word of the model's
/// generator (drawn on every rank) mixed with the rank, so masks differ between ranks,
/// repeat from the seed, and the generator checkpoints save stays the shared one.
public struct GradientReducer {
    /// Sums `count` elements at `buffer` (Float, or Double when `double`) element-wise
    /// across every rank, in place; throws when it could not.
    public typealias Reduce = (_ buffer: UnsafeMutableRawPointer, _ count: Int, _ double: Bool) throws(DLError) -> Void

    public let rank: Int
    public let worldSize: Int
    public let reduce: Reduce

    /// Throws `.invalidArgument` unless 0 <= rank < worldSize.
    public init(rank: Int, worldSize: Int, reduce: @escaping Reduce) throws(DLError) {
        guard worldSize >= 1 else { throw .invalid("world_size must be at least 1, got \(worldSize)") }
        guard rank >= 0, rank < worldSize else { throw .invalid("rank must be from 0 to world_size - 1 = \(worldSize - 1), got \(rank)") }
        self.rank = rank
        self.worldSize = worldSize
        self.reduce = reduce
    }

    /// This rank's contiguous slice of `count` items: [rank * count / N, (rank + 1) * count / N).
    /// Balanced (sizes differ by at most one), and a full global batch of N * b samples gives
    /// every rank exactly b.
    public func shard(_ count: Int) -> Range<Int> {
        let n = worldSize
        return (rank * count / n)..<((rank + 1) * count / n)
    }
}

/// What a model keeps for data-parallel training: the reducer and the packed buffer.
final class DistributedState<T: DLScalar> {
    let reducer: GradientReducer
    /// Parameter gradients, batch-norm statistics, then `trailer` scalars.
    let buffer: UnsafeMutablePointer<T>
    let count: Int
    /// Where the trailer starts.
    let trailer: Int
    static var trailerCount: Int { 5 }
    let batchNorms: [BatchNorm<T>]
    /// Whether some layer draws while training (dropout with a positive rate).
    let draws: Bool
    /// Global samples of the last accepted step.
    var lastSamples = 0

    init(_ reducer: GradientReducer, model: Model<T>) throws(DLError) {
        self.reducer = reducer
        batchNorms = model.layers.compactMap { $0 as? BatchNorm<T> }
        draws = model.layers.contains { (($0 as? Dropout<T>)?.rate ?? 0) > 0 }
        let statistics = batchNorms.reduce(0) { $0 + 2 * $1.channels }
        trailer = model.parameterCount + statistics
        count = trailer + Self.trailerCount
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: 0, count: count)
    }

    deinit { buffer.deallocate() }
}

/// Models that train data-parallel (`Model<Float>`, `Model<Double>`): what the C ABI, the
/// bindings and the command-line tool reach through `any AnyModel`.
public protocol DataParallel: AnyObject {
    /// Sets (or, with nil, removes) the reducer; allocates the packed buffer once.
    func setGradientReducer(_ reducer: GradientReducer?) throws(DLError)
    var gradientReducer: GradientReducer? { get }
    /// Elements of the buffer each training step reduces (0 without a reducer).
    var reducedCount: Int { get }
    /// Samples, over all ranks, of the last accepted training step (nil without a reducer).
    var lastStepSamples: Int? { get }
}

extension Model: DataParallel {
    public func setGradientReducer(_ reducer: GradientReducer?) throws(DLError) {
        distributedState = try reducer.map { (r) throws(DLError) in try DistributedState(r, model: self) }
    }

    public var gradientReducer: GradientReducer? { distributedState?.reducer }
    public var reducedCount: Int { distributedState?.count ?? 0 }
    public var lastStepSamples: Int? { distributedState?.lastSamples }

    /// One data-parallel step: this rank's `batch` samples (0 for an empty shard), its input
    /// from `input`. Returns the global mean loss. See `GradientReducer` for the protocol.
    func distributedStep<S: DLScalar>(_ d: DistributedState<T>, batch: Int, targets: BatchTargets<S>,
                                      input: () throws(DLError) -> Tensor<T>) throws(DLError) -> Double {
        let buf = d.buffer, tail = d.trailer
        var localError: DLError? = nil
        if batch == 0 {
            Kernels.fill(buf, d.count, 0)       // an empty shard adds nothing
        } else {
            do throws(DLError) {
                try packLocalStep(d, batch: batch, targets: targets, input: input)
            } catch {
                localError = error
                Kernels.fill(buf, d.count, 0)   // nor does a failed rank, but its flags
                buf[tail + 3] = 1
                buf[tail + 4] = error.kind == .numeric ? 1 : 0
            }
        }
        try d.reducer.reduce(UnsafeMutableRawPointer(buf), d.count, T.self == Double.self)
        // Counts come back as floats from a reducer the library does not control: anything
        // but a whole number in range means it did not sum what it was given.
        guard let failed = wholeCount(buf[tail + 3], d.reducer.worldSize), let numeric = wholeCount(buf[tail + 4], failed),
              let samples = wholeCount(buf[tail + 2], Limits.maxTensorElements),
              let correct = wholeCount(buf[tail + 1], samples) else {
            throw DLError(.io, "the gradient reducer returned a buffer whose sample and failure counts are not the sums of the ranks' (rank \(d.reducer.rank) of \(d.reducer.worldSize)); nothing was changed")
        }
        if let localError { throw localError }
        guard failed == 0 else {
            throw DLError(numeric == failed ? .numeric : .invalidArgument,
                          "\(failed) of \(d.reducer.worldSize) ranks failed this training step (see their messages); no rank changed anything")
        }
        guard samples >= 1 else { throw DLError(.invalidArgument, "this data-parallel step had no samples on any rank") }
        let total = T(samples)
        let scale = 1 / total
        var offset = 0
        for p in parameters {
            Kernels.map(buf + offset, p.grad.data, p.grad.count) { $0 * scale }
            offset += p.grad.count
        }
        let value = Double(buf[tail]) / Double(total)
        guard value.isFinite else {
            throw DLError(.numeric, "the loss summed over the ranks is \(value); parameters were not updated")
        }
        try optimizer.update(parameters)
        for bn in d.batchNorms {
            let (mean, variance) = bn.pendingStatistics
            Kernels.map(buf + offset, mean.data, bn.channels) { $0 * scale }
            Kernels.map(buf + offset + bn.channels, variance.data, bn.channels) { $0 * scale }
            offset += 2 * bn.channels
            bn.markStatisticsPending()
        }
        for layer in layers { layer.commitTrainingStatistics() }
        lastStepCorrect = loss.isClassification ? correct : nil
        d.lastSamples = samples
        samplesSeen += samples
        return value
    }

    /// Forward and backward on this rank's batch, packed into the buffer as sums over its
    /// samples (see `GradientReducer`).
    private func packLocalStep<S: DLScalar>(_ d: DistributedState<T>, batch: Int, targets: BatchTargets<S>,
                                            input: () throws(DLError) -> Tensor<T>) throws(DLError) {
        let buf = d.buffer, tail = d.trailer
        let xt = try input()
        let t = try loadTargets(targets, batch: batch)
        let out = try forwardWithRankStream(d, xt)
        let value = try loss.compute(out, t, grad: lossGrad)
        guard value.isFinite else {
            throw DLError(.numeric, "the loss is \(value) on rank \(d.reducer.rank) (training diverged, or the learning rate \(optimizer.learningRate) is too large); parameters were not updated")
        }
        try backward(lossGrad)
        let n = T(batch)
        var offset = 0
        for p in parameters {
            Kernels.map(p.grad.data, buf + offset, p.grad.count) { $0 * n }
            offset += p.grad.count
        }
        for bn in d.batchNorms {
            let (mean, variance) = bn.pendingStatistics
            Kernels.map(mean.data, buf + offset, bn.channels) { $0 * n }
            Kernels.map(variance.data, buf + offset + bn.channels, bn.channels) { $0 * n }
            offset += 2 * bn.channels
        }
        buf[tail] = T(value * Double(batch))
        buf[tail + 1] = T(loss.isClassification ? Kernels.countArgmaxMatches(out.data, rows: batch, cols: outputSize, t) : 0)
        buf[tail + 2] = n
        buf[tail + 3] = 0
        buf[tail + 4] = 0
    }

    /// The training forward pass; with dropout on several ranks, the layers draw from a
    /// stream of this step and rank (see `GradientReducer`), and the shared generator moves
    /// on by one word on every rank.
    private func forwardWithRankStream(_ d: DistributedState<T>, _ x: Tensor<T>) throws(DLError) -> Tensor<T> {
        guard d.draws, d.reducer.worldSize > 1, !random.frozen else { return try forward(x, training: true) }
        var shared = random.generator
        let word = shared.next()
        random.generator = RandomGenerator(seed: word ^ (UInt64(d.reducer.rank) &* 0x9E37_79B9_7F4A_7C15))
        defer { random.generator = shared }
        return try forward(x, training: true)
    }

    /// `trainEpoch` with a reducer: every rank draws the same order from the shared
    /// generator, and takes its `GradientReducer.shard` of each global batch of
    /// `batchSize * worldSize` samples. Results and progress are global figures.
    func distributedEpoch(_ d: DistributedState<T>, x: UnsafePointer<Float>, targets: BatchTargets<Float>, count: Int,
                          width: Int, batchSize: Int, shuffle: Bool, progress: ProgressHandler?) throws(DLError) -> EpochResult {
        let world = d.reducer.worldSize
        let (global, overflow) = batchSize.multipliedReportingOverflow(by: world)
        guard !overflow else { throw .invalid("batch size \(batchSize) times \(world) ranks overflows") }
        let batches = count / global + (count % global == 0 ? 0 : 1)
        let order = epochOrder(count: count, shuffle: shuffle)
        let gathered = GatheredTargets(rows: min(batchSize + 1, count), width: width)
        var lossSum = 0.0
        var done = 0, correct = 0
        try order.withUnsafeBufferPointer { (order) throws(DLError) in
            for b in 0..<batches {
                let m = min(global, count - done)
                let mine = d.reducer.shard(m)
                let picked = order.baseAddress! + done + mine.lowerBound
                let n = mine.count
                let batchTargets = gathered.gather(targets, rows: picked, count: n)
                let value = try distributedStep(d, batch: n, targets: batchTargets) { () throws(DLError) in
                    try loadInput(x, rows: picked, batch: n)
                }
                lossSum += value * Double(m)
                done += m
                if let c = lastStepCorrect { correct += c }
                try progress?(EpochProgress(batchesDone: b + 1, batchCount: batches, samplesDone: done,
                                            meanLoss: lossSum / Double(done),
                                            samplesCorrect: loss.isClassification ? correct : nil))
            }
        }
        epoch += 1
        return EpochResult(epoch: epoch, meanLoss: lossSum / Double(count), batches: batches, samples: count)
    }

    /// `evaluate` with a reducer: a collective call (every rank passes the same samples, in
    /// the same order of calls); each rank evaluates its shard and the sums are reduced in
    /// float64, so every rank returns the global figures. A rank that fails still joins the
    /// reduction, and then every rank throws.
    func distributedEvaluate<S: DLScalar>(_ reducer: GradientReducer, x: UnsafePointer<S>, count: Int, targets: BatchTargets<S>,
                                          progress: ProgressHandler?) throws(DLError) -> (loss: Double, accuracy: Double?) {
        guard count > 0 else { throw .invalid("the number of samples must be at least 1, got \(count)") }
        let mine = reducer.shard(count)
        var sums = (0.0, 0.0, 0.0, 0.0, 0.0)   // loss sum, correct, samples, failed, failed with a numeric error
        var localError: DLError? = nil
        if !mine.isEmpty {
            do throws(DLError) {
                let r = try evaluateLocally(x: x + mine.lowerBound * inputSize, count: mine.count,
                                            targets: targets.advanced(by: mine.lowerBound, width: outputSize), progress: progress)
                sums = (r.loss * Double(mine.count), ((r.accuracy ?? 0) * Double(mine.count)).rounded(), Double(mine.count), 0, 0)
            } catch {
                localError = error
                sums = (0, 0, 0, 1, error.kind == .numeric ? 1 : 0)
            }
        }
        try withUnsafeMutableBytes(of: &sums) { (packed) throws(DLError) in
            try reducer.reduce(packed.baseAddress!, 5, true)   // five Doubles, laid out in order
        }
        guard let failed = wholeCount(sums.3, reducer.worldSize), wholeCount(sums.4, failed) != nil,
              let samples = wholeCount(sums.2, count), samples > 0 || failed > 0 else {
            throw DLError(.io, "the gradient reducer returned sample and failure counts that are not the sums of the ranks' (rank \(reducer.rank) of \(reducer.worldSize))")
        }
        if let localError { throw localError }
        guard sums.3 == 0 else {
            throw DLError(sums.4 == sums.3 ? .numeric : .invalidArgument,
                          "\(Int(sums.3)) of \(reducer.worldSize) ranks failed this evaluation (see their messages)")
        }
        let meanLoss = sums.0 / sums.2
        guard meanLoss.isFinite else {
            throw DLError(.numeric, "the loss is \(meanLoss) on these samples (the model's outputs overflow)")
        }
        return (meanLoss, loss.isClassification ? sums.1 / sums.2 : nil)
    }
}

/// `v`, a count a reducer summed, as a whole number from 0 to `limit`; nil when it is not
/// one (NaN, fractional, out of range): the reducer did not sum what it was given.
private func wholeCount<F: BinaryFloatingPoint>(_ v: F, _ limit: Int) -> Int? {
    guard v.isFinite, v >= 0, v <= F(limit), v.rounded() == v else { return nil }
    return Int(v)
}
