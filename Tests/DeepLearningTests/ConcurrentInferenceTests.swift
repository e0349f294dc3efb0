import Glibc
import Testing
@testable import DeepLearning

/// A model with every layer type, its first linear layer after the convolution.
private func everyLayerSpec(dtype: DType) -> ModelSpec {
    makeSpec(input: [1, 6, 6], layers: [
        ("conv2d", ["filters": .int(3), "kernel_size": .int(3), "padding": .int(1)]), ("batch_norm", [:]), ("relu", [:]),
        ("max_pool2d", ["kernel_size": .int(2)]), ("avg_pool2d", ["kernel_size": .int(1)]), ("reshape", ["shape": .ints([27])]),
        ("dropout", ["rate": .double(0.3)]), ("linear", ["units": .int(6)]), ("elu", [:]), ("linear", ["units": .int(4)]),
        ("softmax", [:]),
    ], loss: "mse", optimizer: "adam", optimizerOptions: ["lr": .double(0.01)], seed: 9, dtype: dtype)
}

/// An MLP whose first linear layer sees the model's input (the sparse-input path).
private let sparseSpec = makeSpec(input: [48], layers: [("linear", ["units": .int(12)]), ("tanh", [:]), ("linear", ["units": .int(3)])])

/// Mostly zeros, a few values: what sends a first linear layer down its sparse path.
private func inputs(_ count: Int, _ size: Int, seed: UInt64) -> [Float] {
    var g = RandomGenerator(seed: seed)
    return (0..<count * size).map { _ in
        let u = Float(g.uniform())
        return u < 0.8 ? 0 : 4 * u - 3
    }
}

/// Runs `body(thread)` on `threads` POSIX threads at once and waits for all of them.
private func onThreads(_ threads: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Job: @unchecked Sendable {
        let body: @Sendable (Int) -> Void
        let index: Int
        init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) { (self.body, self.index) = (body, index) }
    }
    var handles: [pthread_t] = []
    for t in 0..<threads {
        var handle = pthread_t()
        let job = Unmanaged.passRetained(Job(body, t)).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
            job.body(job.index)
            return nil
        }, job)
        #expect(rc == 0)
        if rc == 0 { handles.append(handle) }
    }
    for h in handles { pthread_join(h, nil) }
}

/// Results shared with the threads, each writing only its own slot. (Raw memory: writing
/// an element of a Swift array is an access to the whole array, a race under TSan.)
private final class Slots: @unchecked Sendable {
    let base: UnsafeMutablePointer<Bool>
    let count: Int
    init(_ count: Int) {
        self.count = count
        base = .allocate(capacity: count)
        base.initialize(repeating: false, count: count)
    }
    deinit { base.deallocate() }
    var values: [Bool] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

@Suite struct ConcurrentInferenceTests {
    /// `infer`, the pass that concurrent callers run, gives the training path's evaluation-mode
    /// forward bit for bit, for every layer type, in float32 and float64.
    @Test(arguments: [DType.float32, .float64])
    func inferEqualsEvaluationForward(dtype: DType) throws {
        func check<T: DLScalar>(_ model: Model<T>) throws {
            let count = 9
            let x = inputs(count, model.inputSize, seed: 2)
            let labels = [Float](repeating: 0.25, count: count * model.outputSize)
            // A step first: batch norm's running statistics and the weights move.
            try x.withUnsafeBufferPointer { xb in
                try labels.withUnsafeBufferPointer { _ = try model.trainStep(x: xb.baseAddress!, batch: count, targets: .values($0.baseAddress!)) }
            }
            let xt = try model.loadInput(x.withUnsafeBufferPointer { $0.baseAddress! }, batch: count)
            let copy = try Tensor<T>(shape: xt.shape, values: xt.array)
            let reference = try model.forward(copy, training: false).array
            let context = try InferenceContext<T>(layers: model.layers.count)
            #expect(try model.infer(copy, context).array == reference)
            #expect(try model.infer(copy, context).array == reference)   // a reused context too
        }
        switch dtype {
        case .float32: try check(try Model<Float>(spec: everyLayerSpec(dtype: dtype)))
        case .float64: try check(try Model<Double>(spec: everyLayerSpec(dtype: dtype)))
        }
    }

    /// A linear layer applies the activation after it in evaluation (`Model.fuseLayers`):
    /// predictions of single samples and batches, sparse and dense, through the folded first
    /// layer and the hidden ones, are bit for bit those of the layers run one by one, in
    /// float32 and float64; training is not affected.
    @Test(arguments: [DType.float32, .float64])
    func fusedActivationsPredictTheLayersBits(dtype: DType) throws {
        let spec = makeSpec(input: [48], layers: [
            ("linear", ["units": .int(16)]), ("relu", [:]), ("linear", ["units": .int(12)]), ("tanh", [:]),
            ("dropout", ["rate": .double(0.2)]), ("linear", ["units": .int(10)]), ("gelu", [:]), ("gelu", [:]),
            ("linear", ["units": .int(3)]),
        ], seed: 5, dtype: dtype)
        func check<T: DLScalar>(_ fused: Model<T>, _ plain: Model<T>) throws {
            // Each activation right after a linear layer is passed over; the second GELU
            // follows an activation, the third linear layer a dropout: both run.
            #expect(fused.passedInInference == [false, true, false, true, false, false, true, false, false])
            plain.unfuseInference()
            #expect(plain.passedInInference.allSatisfy { !$0 })
            var g = RandomGenerator(seed: 3)
            let sparse = inputs(300, 48, seed: 6)
            let dense = (0..<300 * 48).map { _ in Float(g.uniform()) * 255 }
            for x in [sparse, dense] {
                // A training step first, the same on both: weights away from their initial values.
                let labels = (0..<64).map { Int32($0 % 3) }
                try x.withUnsafeBufferPointer { xb in
                    try labels.withUnsafeBufferPointer { lb in
                        let a = try fused.trainStep(x: xb.baseAddress!, batch: 64, targets: .labels(lb.baseAddress!))
                        let b = try plain.trainStep(x: xb.baseAddress!, batch: 64, targets: .labels(lb.baseAddress!))
                        #expect(a == b)
                    }
                }
                for count in [1, 7, 300] {
                    var a = [Float](repeating: .nan, count: count * 3), b = a
                    try x.withUnsafeBufferPointer { xb in
                        try a.withUnsafeMutableBufferPointer { try fused.predict(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
                        try b.withUnsafeMutableBufferPointer { try plain.predict(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
                    }
                    #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(count) samples")
                    #expect(a.allSatisfy { $0.isFinite })
                }
            }
        }
        switch dtype {
        case .float32: try check(try Model<Float>(spec: spec), try Model<Float>(spec: spec))
        case .float64: try check(try Model<Double>(spec: spec), try Model<Double>(spec: spec))
        }
    }

    /// Threads predicting, predicting classes and evaluating on one model at once get the
    /// serial results bit for bit, every time; the model's state is not touched.
    @Test(arguments: [("every layer", 37), ("sparse input", 64), ("sparse input", 1)])
    func threadsOnOneModelGetTheSerialResults(kind: String, count: Int) throws {
        let model = try Model<Float>(spec: kind == "every layer" ? everyLayerSpec(dtype: .float32) : sparseSpec)
        let (inSize, outSize) = (model.inputSize, model.outputSize)
        let x = inputs(count, inSize, seed: 4)
        let targets = (0..<count * outSize).map { Float($0 % outSize == 0 ? 1 : 0) }
        var serial = [Float](repeating: 0, count: count * outSize)
        var serialClasses = [Int32](repeating: 0, count: count)
        try x.withUnsafeBufferPointer { xb in
            try targets.withUnsafeBufferPointer { _ = try model.trainStep(x: xb.baseAddress!, batch: count, targets: .values($0.baseAddress!)) }
            try serial.withUnsafeMutableBufferPointer { try model.predict(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
            try serialClasses.withUnsafeMutableBufferPointer { try model.predictClasses(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
        }
        let serialLoss = try x.withUnsafeBufferPointer { xb in
            try targets.withUnsafeBufferPointer { try model.evaluate(x: xb.baseAddress!, count: count, targets: .values($0.baseAddress!)).loss }
        }
        let parameters = bits(model)
        let (expected, expectedClasses) = (serial, serialClasses)
        let threads = 4, rounds = 40
        let agree = Slots(threads)
        nonisolated(unsafe) let shared = model
        onThreads(threads) { t in
            var out = [Float](repeating: 0, count: count * outSize)
            var classes = [Int32](repeating: 0, count: count)
            var same = true
            for _ in 0..<rounds {
                do {
                    try x.withUnsafeBufferPointer { xb in
                        try out.withUnsafeMutableBufferPointer { try shared.predict(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
                        try classes.withUnsafeMutableBufferPointer { try shared.predictClasses(x: xb.baseAddress!, count: count, into: $0.baseAddress!) }
                        let loss = try targets.withUnsafeBufferPointer {
                            try shared.evaluate(x: xb.baseAddress!, count: count, targets: .values($0.baseAddress!)).loss
                        }
                        same = same && out == expected && classes == expectedClasses && loss == serialLoss
                    }
                } catch {
                    same = false
                }
            }
            agree.base[t] = same
        }
        #expect(agree.values == [Bool](repeating: true, count: threads))
        #expect(bits(model) == parameters)
    }
}
