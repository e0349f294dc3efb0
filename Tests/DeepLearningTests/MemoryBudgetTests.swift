import Glibc
import Testing
@testable import DeepLearning

/// The spec's "memory_budget": a model needing more activation and workspace memory for one
/// sample is refused when built, naming the layer; predict works in chunks that fit.
@Suite struct MemoryBudgetTests {
    static func peakKiB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss
    }

    /// A 1x1 convolution padded by 23000 on a 1x1x1 input: 46001^2 outputs, about 24 GiB per
    /// sample with its columns. Refused at once, before any activation is allocated.
    @Test func aModelBeyondTheBudgetIsRefusedNamingTheLayer() throws {
        let spec = try SpecParser.parse(json: """
        {"input": {"shape": [1, 1, 1]}, "layers": [{"type": "conv2d", "filters": 1, "kernel_size": 1, "padding": 23000},
         {"type": "flatten"}, {"type": "linear", "units": 1}], "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}}
        """)
        let peak = Self.peakKiB()
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        do {
            _ = try makeModel(spec: spec)
            Issue.record("a model needing about 24 GiB per sample was built")
        } catch {
            #expect(error.kind == .noMemory, "\(error)")
            #expect(error.message.contains("layers[0] (conv2d)") && error.message.contains("memory_budget"), "\(error)")
            #expect(error.message.contains("1024 MiB"), "\(error)")
        }
        clock_gettime(CLOCK_MONOTONIC, &end)
        let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) * 1e-9
        #expect(seconds < 1, "took \(seconds) s")
        #expect(Self.peakKiB() - peak < 64 * 1024, "the peak grew by \(Self.peakKiB() - peak) KiB")
    }

    static func mlp(budget: Int?) -> String {
        """
        {"input": {"size": 20}, "layers": [{"type": "linear", "units": 64}, {"type": "relu"}, {"type": "linear", "units": 5}],
         "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 5\(budget.map { #", "memory_budget": \#($0)"# } ?? "")}
        """
    }

    @Test func theBudgetIsTheCallersToSet() throws {
        let spec = try SpecParser.parse(json: Self.mlp(budget: nil))
        #expect(spec.memoryBudget == 1024)
        #expect(try SpecParser.parse(json: Self.mlp(budget: 3)).memoryBudget == 3)
        for bad in ["0", "-1", "1.5", "\"big\""] {
            #expect(throws: DLError.self) { try SpecParser.parse(json: Self.mlp(budget: nil).dropLast() + #", "memory_budget": \#(bad)}"#) }
        }
        // A layer of 2^20 outputs needs 8 MiB per sample in float32 with its gradient: refused
        // under a budget of 8 MiB (the input pushes it over), accepted under 9.
        func wide(_ budget: Int) throws -> ModelSpec {
            try SpecParser.parse(json: """
            {"input": {"size": 1}, "layers": [{"type": "linear", "units": 1048576}], "loss": "mse",
             "optimizer": {"type": "sgd", "lr": 0.1}, "memory_budget": \(budget)}
            """)
        }
        #expect(throws: DLError.self) { try makeModel(spec: try wide(8)) }
        _ = try makeModel(spec: try wide(9))
    }

    /// With a 1 MiB budget the MLP predicts in chunks of 2^20 / (4 (20 + 64 + 64 + 5)) = 1713
    /// samples: 100,000 samples in one call equal, bit for bit, the same samples predicted
    /// chunk by chunk, and (to rounding: OpenBLAS's blocking depends on the row count) in
    /// slices of 999.
    @Test func predictionsInChunksEqualPredictionsInSlices() throws {
        let model = try Model<Float>(spec: try SpecParser.parse(json: Self.mlp(budget: 1)))
        let chunk = (1 << 20) / (4 * (20 + 64 + 64 + 5))
        #expect(model.inferenceChunk == chunk)
        let count = 100_000
        var rng = RandomGenerator(seed: 8)
        let x = (0..<count * 20).map { _ in Float(rng.normal()) }
        func predict(slices: Int) throws -> [Float] {
            var out = [Float](repeating: .nan, count: count * 5)
            try x.withUnsafeBufferPointer { xp in
                try out.withUnsafeMutableBufferPointer { out in
                    for start in stride(from: 0, to: count, by: slices) {
                        let n = min(slices, count - start)
                        try model.predict(x: xp.baseAddress! + start * 20, count: n, into: out.baseAddress! + start * 5)
                    }
                }
            }
            return out
        }
        let whole = try predict(slices: count), chunked = try predict(slices: chunk), sliced = try predict(slices: 999)
        let same = whole.map(\.bitPattern) == chunked.map(\.bitPattern)
        #expect(same)
        let close = zip(whole, sliced).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }
        #expect(close && !whole.contains { $0.isNaN })
    }
}
