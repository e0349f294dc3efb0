import Testing
@testable import DeepLearning

/// Data-parallel training's core (Distributed.swift) with reducers written here, no MPI:
/// the shard arithmetic, a reducer that doubles (two identical ranks) against the plain step,
/// the packed buffer's layout, and reducers that misbehave (no trap, nothing changed).
/// bindings/c/test_distributed.c runs real multi-rank equivalence (threads, and MPI).
@Suite struct DistributedTests {
    static func model(seed: UInt64 = 4) throws -> Model<Float> {
        try Model<Float>(spec: try SpecParser.parse(json: """
        {"input": {"size": 5}, "layers": [{"type": "linear", "units": 6}, {"type": "tanh"},
         {"type": "linear", "units": 3}], "loss": "cross_entropy",
         "optimizer": {"type": "adam", "lr": 0.01}, "seed": \(seed)}
        """))
    }

    static let batch = 6
    static let x: [Float] = (0..<batch * 5).map { Float(($0 * 7) % 13) / 6 - 1 }
    static let labels: [Int32] = [0, 1, 2, 1, 0, 2]

    static func step(_ m: Model<Float>, batch: Int = batch) throws(DLError) -> Double {
        try x.withUnsafeBufferPointer { (xp) throws(DLError) in
            try labels.withUnsafeBufferPointer { (lp) throws(DLError) in
                try m.trainStep(x: xp.baseAddress!, batch: batch, targets: .labels(lp.baseAddress!))
            }
        }
    }

    static func values(_ m: Model<Float>) -> [Float] { m.parameters.flatMap { $0.values } }

    @Test func shardsAreContiguousBalancedAndCoverEverything() throws {
        for world in 1...5 {
            for count in [0, 1, 7, 24, 100] {
                var next = 0
                for rank in 0..<world {
                    let r = try GradientReducer(rank: rank, worldSize: world) { (_, _, _) throws(DLError) in }.shard(count)
                    #expect(r.lowerBound == next)
                    #expect(r.count == count / world || r.count == count / world + 1)
                    next = r.upperBound
                }
                #expect(next == count)
            }
        }
        // A full global batch of N * b gives every rank b.
        #expect(try GradientReducer(rank: 2, worldSize: 3) { (_, _, _) throws(DLError) in }.shard(24) == 16..<24)
        #expect(throws: DLError.self) { try GradientReducer(rank: 3, worldSize: 3) { (_, _, _) throws(DLError) in } }
        #expect(throws: DLError.self) { try GradientReducer(rank: 0, worldSize: 0) { (_, _, _) throws(DLError) in } }
    }

    /// Two identical ranks sum to twice each buffer: the step must be the plain one, and the
    /// buffer must hold n * gradient, then the trailer (loss sum, correct, samples, 0, 0).
    @Test func doublingReducerEqualsThePlainStep() throws {
        let a = try Self.model(), b = try Self.model()
        var packed: [Float] = []
        try a.setGradientReducer(try GradientReducer(rank: 0, worldSize: 2) { (buffer, count, double) throws(DLError) in
            #expect(!double)
            let p = buffer.assumingMemoryBound(to: Float.self)
            packed = Array(UnsafeBufferPointer(start: p, count: count))
            for i in 0..<count { p[i] *= 2 }
        })
        #expect(a.reducedCount == a.parameterCount + 5)
        // The reference gradient: b's own, from a pass that changes nothing.
        let lossB = try Self.x.withUnsafeBufferPointer { xp in
            try Self.labels.withUnsafeBufferPointer { lp in
                try b.lossAndGradients(x: xp.baseAddress!, batch: Self.batch, targets: .labels(lp.baseAddress!))
            }
        }
        let grads = b.parameters.flatMap { p in (0..<p.grad.count).map { p.grad.data[$0] } }
        let lossA = try Self.step(a)
        let n = Float(Self.batch)
        #expect(packed.count == a.reducedCount)
        #expect(zip(packed, grads).allSatisfy { abs($0 - n * $1) <= 1e-5 * max(1, abs(n * $1)) })
        let tail = packed.suffix(5).map { $0 }
        #expect(abs(Double(tail[0]) - lossB * Double(Self.batch)) < 1e-4)
        #expect(tail[2] == n && tail[3] == 0 && tail[4] == 0)
        #expect(abs(lossA - lossB) < 1e-6)
        #expect(a.lastStepSamples == 2 * Self.batch)
        #expect(a.samplesSeen == 2 * Self.batch)      // both "ranks'" samples
        _ = try Self.step(b)
        #expect(zip(Self.values(a), Self.values(b)).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    /// Whatever a broken reducer returns (NaN counts, fractional or too many failures), or
    /// when it throws, the step throws and the model is unchanged; no trap.
    @Test func misbehavingReducersChangeNothing() throws {
        let breakages: [(UnsafeMutablePointer<Float>, Int) -> Void] = [
            { p, c in p[c - 3] = .nan },           // sample count
            { p, c in p[c - 3] = 2.5 },
            { p, c in p[c - 3] = -1 },
            { p, c in p[c - 2] = 7 },              // more failed ranks than ranks
            { p, c in p[c - 4] = 1e9 },            // more correct than samples
            { p, c in p[c - 1] = .infinity },
        ]
        for breakage in breakages {
            let m = try Self.model(), before = Self.values(m)
            try m.setGradientReducer(try GradientReducer(rank: 1, worldSize: 2) { (buffer, count, _) throws(DLError) in
                breakage(buffer.assumingMemoryBound(to: Float.self), count)
            })
            #expect(throws: DLError.self) { try Self.step(m) }
            #expect(Self.values(m) == before)
            #expect(m.optimizer.step == 0 && m.samplesSeen == 0)
        }
        let m = try Self.model(), before = Self.values(m)
        try m.setGradientReducer(try GradientReducer(rank: 0, worldSize: 2) { (_, _, _) throws(DLError) in
            throw DLError(.io, "link down")
        })
        do { _ = try Self.step(m); Issue.record("the step should fail") } catch { #expect(error.message == "link down") }
        #expect(Self.values(m) == before)
        // Evaluation reduces 5 doubles, and refuses nonsense the same way.
        try m.setGradientReducer(try GradientReducer(rank: 0, worldSize: 2) { (buffer, count, double) throws(DLError) in
            #expect(double && count == 5)
            buffer.assumingMemoryBound(to: Double.self)[2] = .nan
        })
        #expect(throws: DLError.self) {
            try Self.x.withUnsafeBufferPointer { xp in
                try Self.labels.withUnsafeBufferPointer { lp in
                    try m.evaluate(x: xp.baseAddress!, count: Self.batch, targets: .labels(lp.baseAddress!))
                }
            }
        }
    }

    /// With one rank (world size 1) and a reducer that does nothing, training is the plain
    /// training, bit for bit, epochs included (same shuffle, same batches, same sums).
    @Test func oneRankIsThePlainRun() throws {
        let a = try Self.model(), b = try Self.model()
        try a.setGradientReducer(try GradientReducer(rank: 0, worldSize: 1) { (_, _, _) throws(DLError) in })
        for m in [a, b] {
            try Self.x.withUnsafeBufferPointer { xp in
                try Self.labels.withUnsafeBufferPointer { lp in
                    for _ in 0..<3 {
                        _ = try m.trainEpoch(x: xp.baseAddress!, targets: .labels(lp.baseAddress!), count: Self.batch, batchSize: 4)
                    }
                }
            }
        }
        #expect(zip(Self.values(a), Self.values(b)).allSatisfy { abs($0 - $1) <= 1e-6 })
        #expect(a.rng.state == b.rng.state)
        #expect(a.optimizer.step == b.optimizer.step && a.epoch == b.epoch)
    }
}
