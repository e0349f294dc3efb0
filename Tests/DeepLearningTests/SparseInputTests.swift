import Testing
import CDeepLearningKernels
@testable import DeepLearning

/// The sparse path of a float32 linear layer (SparseInput) against the formulas computed in
/// float64 with naive loops, for both the AVX2 and the portable C kernels, on shapes that
/// exercise every tail of the vector code (inputs and outputs not multiples of 8 or 64).
@Suite struct SparseInputTests {
    struct Case: CustomTestStringConvertible {
        var rows: Int, inputs: Int, outputs: Int, background: Float, density: Double, bias: Bool
        var testDescription: String { "\(rows)x\(inputs)->\(outputs) v=\(background) density \(density) bias \(bias)" }
    }

    static let cases: [Case] = [
        Case(rows: 8, inputs: 1, outputs: 1, background: 0, density: 0.2, bias: true),
        Case(rows: 9, inputs: 13, outputs: 3, background: -0.4242, density: 0.15, bias: true),
        Case(rows: 64, inputs: 784, outputs: 128, background: -0.4242, density: 0.19, bias: true),
        Case(rows: 20, inputs: 33, outputs: 75, background: 2.5, density: 0.1, bias: false),
        Case(rows: 17, inputs: 64, outputs: 64, background: 0, density: 0.05, bias: true),
        Case(rows: 50, inputs: 100, outputs: 137, background: 1, density: 0.2, bias: true),
        Case(rows: 12, inputs: 40, outputs: 9, background: 0, density: 0, bias: true),  // all background
        Case(rows: 130, inputs: 37, outputs: 70, background: -0.4242, density: 0.2, bias: true),  // 64-row blocks and a tail
    ]

    /// A batch in which each entry is `background` except with probability `density`.
    static func batch(_ c: Case, seed: UInt64) throws -> Tensor<Float> {
        var rng = RandomGenerator(seed: seed)
        let x = try Tensor<Float>(shape: [c.rows, c.inputs])
        for i in 0..<x.count {
            x.data[i] = rng.uniform() < c.density ? Float(rng.normal() * 2) : c.background
        }
        return x
    }

    static func layer(_ c: Case, portable: Bool) throws -> Linear<Float> {
        var rng = RandomGenerator(seed: 11)
        let layer = try Linear<Float>(inFeatures: c.inputs, outFeatures: c.outputs, bias: c.bias)
        Initializer.heNormal.fill(layer.weight.value, fanIn: c.inputs, fanOut: c.outputs, rng: &rng)
        for p in layer.parameters where p.name == "bias" { for i in 0..<p.value.count { p.value.data[i] = Float(rng.normal()) } }
        layer.enableSparseInput()
        layer.sparseInput?.forcePlainC = portable
        return layer
    }

    /// Runs `x` forward and back through `layer` and compares y, dW, db (and dx when asked
    /// for) with the formulas in float64, reading the weight and its gradient in their
    /// documented (out, in) order whatever the layer keeps in memory.
    static func checkAgainstFormulas(_ layer: Linear<Float>, _ x: Tensor<Float>, inputGradient: Bool = false,
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (rows, inputs, outputs) = (x.shape[0], layer.inFeatures, layer.outFeatures)
        #expect(layer.weight.storage is TransposedMatrix, sourceLocation: sourceLocation)
        let y = try layer.forward(x, training: true)
        var rng = RandomGenerator(seed: 6)
        let dy = try Tensor<Float>(shape: [rows, outputs])
        for i in 0..<dy.count { dy.data[i] = Float(rng.normal()) }
        let dx = try layer.backward(dy, needInputGradient: inputGradient)
        #expect((dx == nil) == !inputGradient, sourceLocation: sourceLocation)

        let w = layer.weight.values, dw = layer.weight.values(of: layer.weight.grad), b = layer.bias?.value
        var worstY = 0.0, worstW = 0.0, worstB = 0.0, worstX = 0.0
        for n in 0..<rows {
            for o in 0..<outputs {
                var expected = b.map { Double($0.data[o]) } ?? 0
                var scale = abs(expected)
                for i in 0..<inputs {
                    let term = Double(x.data[n * inputs + i]) * Double(w[o * inputs + i])
                    expected += term
                    scale += abs(term)
                }
                worstY = max(worstY, abs(Double(y.data[n * outputs + o]) - expected) / max(scale, 1e-3))
            }
        }
        for o in 0..<outputs {
            for i in 0..<inputs {
                var expected = 0.0, scale = 0.0
                for n in 0..<rows {
                    let term = Double(dy.data[n * outputs + o]) * Double(x.data[n * inputs + i])
                    expected += term
                    scale += abs(term)
                }
                worstW = max(worstW, abs(Double(dw[o * inputs + i]) - expected) / max(scale, 1e-3))
            }
            if let bias = layer.bias {
                let expected = (0..<rows).reduce(0.0) { $0 + Double(dy.data[$1 * outputs + o]) }
                worstB = max(worstB, abs(Double(bias.grad.data[o]) - expected))
            }
        }
        if let dx {
            for n in 0..<rows {
                for i in 0..<inputs {
                    var expected = 0.0, scale = 0.0
                    for o in 0..<outputs {
                        let term = Double(dy.data[n * outputs + o]) * Double(w[o * inputs + i])
                        expected += term
                        scale += abs(term)
                    }
                    worstX = max(worstX, abs(Double(dx.data[n * inputs + i]) - expected) / max(scale, 1e-3))
                }
            }
        }
        // float32 rounding of sums of at most a few hundred terms, relative to their magnitude
        #expect(worstY < 1e-5, "forward: worst relative error \(worstY)", sourceLocation: sourceLocation)
        #expect(worstW < 1e-5, "weight gradient: worst relative error \(worstW)", sourceLocation: sourceLocation)
        #expect(worstB < 1e-4, "bias gradient: worst error \(worstB)", sourceLocation: sourceLocation)
        #expect(worstX < 1e-5, "input gradient: worst relative error \(worstX)", sourceLocation: sourceLocation)
    }

    @Test(arguments: cases, [false, true])
    func matchesTheFormulas(_ c: Case, portable: Bool) throws {
        let layer = try Self.layer(c, portable: portable)
        let x = try Self.batch(c, seed: 5)
        _ = try layer.forward(x, training: true)
        #expect(layer.forwardWasSparse, "the batch is sparse enough for the sparse path")
        try Self.checkAgainstFormulas(layer, x)
        #expect(layer.forwardWasSparse)
    }

    /// The other paths read the weight kept as W^T too: a single sample (a C kernel, AVX2
    /// and plain C) and dense batches (BLAS).
    @Test(arguments: [1, 3, 64], [false, true])
    func denseBatchesOfTheTransposedLayerMatchTheFormulas(rows: Int, portable: Bool) throws {
        var c = Self.cases[5]
        c.rows = rows
        c.density = 0.7
        let layer = try Self.layer(c, portable: portable)
        let x = try Self.batch(c, seed: 4)
        try Self.checkAgainstFormulas(layer, x, inputGradient: true)
        #expect(!layer.forwardWasSparse)
        // and a sparse batch, with the input gradient asked for
        c.rows = 64
        c.density = 0.1
        try Self.checkAgainstFormulas(layer, try Self.batch(c, seed: 5), inputGradient: true)
        #expect(layer.forwardWasSparse)
    }

    /// A dense batch large enough for the chunked forward (two OpenBLAS calls on W^T's
    /// halves, added in order) matches the formulas, with the same bits on any number of
    /// threads.
    @Test(arguments: [64, 200]) func theChunkedDenseForwardMatchesTheFormulas(rows: Int) throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        var c = Self.cases[2]
        c.rows = rows
        c.density = 0.7
        let x = try Self.batch(c, seed: 6)
        var outputs: [[Float]] = []
        for threads in [1, 2, 3, 8] {
            Kernels.threads = threads
            let layer = try Self.layer(c, portable: false)
            #expect(rows * c.inputs * c.outputs >= GemmBlocks.minWork, "the case is large enough to be chunked")
            try Self.checkAgainstFormulas(layer, x, inputGradient: true)
            #expect(!layer.forwardWasSparse)
            outputs.append(try layer.forward(x, training: true).array)
        }
        for (i, y) in outputs.enumerated() { #expect(y == outputs[0], "thread setting \(i)") }
    }

    /// The layer keeps its weight as W^T, but outside it the weight reads and writes in its
    /// documented (out, in) order, as a model built without the sparse path has it.
    @Test func theWeightReadsInItsDocumentedOrder() throws {
        let c = Self.cases[3]
        var rng = RandomGenerator(seed: 11)
        let dense = try Linear<Float>(inFeatures: c.inputs, outFeatures: c.outputs, bias: c.bias)
        Initializer.heNormal.fill(dense.weight.value, fanIn: c.inputs, fanOut: c.outputs, rng: &rng)
        let sparse = try Self.layer(c, portable: false)
        #expect(dense.weight.storage == nil && sparse.weight.storage is TransposedMatrix)
        #expect(sparse.weight.values == dense.weight.value.array)
        // kept transposed: W[o, i] at i * outputs + o
        #expect(sparse.weight.value.data[5 * c.outputs + 2] == dense.weight.value.data[2 * c.inputs + 5])
        let written = (0..<dense.weight.value.count).map { Double($0) * 0.5 }
        written.withUnsafeBufferPointer { sparse.weight.write(sparse.weight.value, from: $0.baseAddress!) }
        #expect(sparse.weight.values == written.map { Float($0) })
        var back = [Double](repeating: 0, count: written.count)
        back.withUnsafeMutableBufferPointer { sparse.weight.read(sparse.weight.value, into: $0.baseAddress!) }
        #expect(back == written)
    }

    /// The kernels give the same bits with any number of threads (each output is computed by
    /// one thread, in the serial order): forward and weight gradient of sparse batches and
    /// single samples, for both kernel versions, on shapes with every kind of tail.
    @Test(arguments: [false, true])
    func kernelsGiveTheSameBitsWithAnyNumberOfThreads(portable: Bool) throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        for c in Self.cases + [Case(rows: 64, inputs: 784, outputs: 200, background: 0, density: 0.1, bias: false)] {
            func run(threads: Int) throws -> [[Float]] {
                Kernels.threads = threads
                let layer = try Self.layer(c, portable: portable)
                let x = try Self.batch(c, seed: 5)
                let y = try layer.forward(x, training: true).array
                #expect(layer.forwardWasSparse)
                let dy = try Tensor<Float>(shape: [c.rows, c.outputs], values: (0..<c.rows * c.outputs).map { Float($0 % 7) - 3 })
                _ = try layer.backward(dy, needInputGradient: false)
                let one = try Tensor<Float>(shape: [1, c.inputs], values: Array(x.array.prefix(c.inputs)))
                let single = try layer.forward(one, training: false).array
                return [y, layer.weight.grad.array, layer.bias?.grad.array ?? [], single]
            }
            let serial = try run(threads: 1)
            for threads in [2, 3, 5, 8] {
                #expect(try run(threads: threads) == serial, "\(c), \(threads) threads")
            }
        }
    }

    /// The AVX2 and plain C kernels compute the same sums (up to rounding).
    @Test func bothKernelsAgree() throws {
        let c = Self.cases[2]
        let x = try Self.batch(c, seed: 9)
        let a = try Self.layer(c, portable: false), b = try Self.layer(c, portable: true)
        let ya = try a.forward(x, training: true).array, yb = try b.forward(x, training: true).array
        #expect(maxAbsDiff(ya.map(Double.init), yb.map(Double.init)) < 1e-4)
    }

    /// A single sample: the vector kernels (AVX-512 128 columns at a time where the CPU has
    /// it, AVX2 for the rest) add the same products in the same order as the plain C one,
    /// so the bits are the same, on widths with every kind of tail.
    @Test(arguments: [128, 137, 300, 7]) func oneSampleGivesThePlainKernelsBits(outputs: Int) throws {
        var c = Self.cases[2]
        c.rows = 1
        c.outputs = outputs
        let x = try Self.batch(c, seed: 12)
        let a = try Self.layer(c, portable: false), b = try Self.layer(c, portable: true)
        let ya = try a.forward(x, training: false).array, yb = try b.forward(x, training: false).array
        #expect(ya.map(\.bitPattern) == yb.map(\.bitPattern))
    }

    /// A single sample to predict (`infer`): sparse enough, it takes the sparse path with
    /// the base terms kept in the caller's workspace, and gives what the formulas give, for
    /// a background of 0 and not, with and without a bias, on both kinds of kernels and on
    /// the kernel threads; the same bits as the same row of a batch through the sparse
    /// forward; too dense, the dense kernel, also right.
    @Test(arguments: cases.filter { $0.inputs >= 8 }, [false, true])
    func oneSampleToPredictMatchesTheFormulas(_ c: Case, portable: Bool) throws {
        var one = c
        one.rows = 1
        // Up to `singleMaxDensity` (0.8) of the inputs off the background is sparse: 0.7 of
        // 100 or more inputs stays under it (784 inputs: 549 +- 13 of the 627 allowed).
        let middle = c.inputs >= 100 ? [(0.7, true)] : []
        for (density, sparse) in [(c.density, true)] + middle + [(1.0, false)] {
            one.density = density
            let layer = try Self.layer(one, portable: portable)
            let x = try Self.batch(one, seed: 21)
            let scratch = try InferenceScratch<Float>()
            let y = try layer.infer(x, scratch: scratch).array
            #expect(scratch.sparse.singleWasSparse == sparse, "density \(density)")
            let w = layer.weight.values, b = layer.bias?.values
            var worst = 0.0
            for o in 0..<one.outputs {
                var expected = b.map { Double($0[o]) } ?? 0, scale = abs(expected)
                for i in 0..<one.inputs {
                    let term = Double(x.data[i]) * Double(w[o * one.inputs + i])
                    expected += term
                    scale += abs(term)
                }
                worst = max(worst, abs(Double(y[o]) - expected) / max(scale, 1e-3))
            }
            #expect(worst < 1e-5, "density \(density): worst relative error \(worst)")
            guard sparse else {
                // Too dense: multiplied by the rows of the copy of W the scratch keeps.
                #expect(scratch.sparse.weight.key == layer.weight.generation, "density \(density): the kept W")
                continue
            }
            if one.background != 0 {
                #expect(scratch.sparse.basesKey?.background == one.background.bitPattern, "compressed around the background")
            }
            // The sample as the first row of a batch that the training forward compresses
            // around the same background, computing the base terms itself.
            var eight = one
            eight.rows = 8
            let batch = try Self.batch(eight, seed: 22)
            for i in 0..<one.inputs { batch.data[i] = x.data[i] }
            let rows = try layer.forward(batch, training: true).array
            let off = (0..<one.inputs).count { x.data[$0] != one.background }
            guard off * 4 <= one.inputs else { continue }   // over the batch path's budget
            #expect(layer.forwardWasSparse && layer.sparseInput?.background == one.background)
            #expect(Array(rows[0..<one.outputs]).map(\.bitPattern) == y.map(\.bitPattern))
        }
    }

    /// Single samples to predict keep the first layer's base terms (b + v rowsum(W)) between
    /// calls, and dense ones a copy of W. Every change of the weights (a training step, a
    /// weight or a bias written) and of the background is followed:
    /// each prediction is checked against the float64 formulas of the whole model with the
    /// weights it has then.
    @Test(arguments: [true, false]) func keptBaseTermsFollowEveryChange(sparse: Bool) throws {
        let layers: [(String, [String: SpecValue])] = [("linear", ["units": .int(16)]), ("relu", [:]), ("linear", ["units": .int(4)])]
        let model = try Model<Float>(spec: makeSpec(input: [50], layers: layers, seed: 3))
        func value(_ name: String) -> [Double] {
            model.parameters.first { $0.name == name }!.values.map(Double.init)
        }
        func check(_ x: Tensor<Float>, _ what: String) throws {
            var out = [Float](repeating: 0, count: 4)
            try out.withUnsafeMutableBufferPointer { (o) throws(DLError) in
                try model.predict(x: UnsafePointer(x.data), count: 1, into: o.baseAddress!)
            }
            #expect(model.spareContext?.scratch?.sparse.singleWasSparse == sparse, "\(what): the sparse path or not")
            let w1 = value("layers.0.weight"), b1 = value("layers.0.bias")
            let w2 = value("layers.2.weight"), b2 = value("layers.2.bias")
            var hidden = [Double](repeating: 0, count: 16)
            for h in 0..<16 {
                var sum = b1[h]
                for i in 0..<50 { sum += Double(x.data[i]) * w1[h * 50 + i] }
                hidden[h] = max(0, sum)
            }
            for o in 0..<4 {
                var expected = b2[o]
                for h in 0..<16 { expected += hidden[h] * w2[o * 16 + h] }
                #expect(abs(Double(out[o]) - expected) < 1e-5 * max(1, abs(expected)), "\(what): output \(o)")
            }
        }
        // Dense (every input off the background), the sample is multiplied by the copy of W
        // the context keeps (`keptWeight`), which must follow the same changes.
        let c = Case(rows: 1, inputs: 50, outputs: 16, background: -0.5, density: sparse ? 0.2 : 1.0, bias: true)
        let x = try Self.batch(c, seed: 31)
        try check(x, "first call")
        try check(x, "second call, the same weights")

        var eight = c
        eight.rows = 8
        let batch = try Self.batch(eight, seed: 32)
        let labels: [Int32] = [0, 1, 2, 3, 0, 1, 2, 3]
        _ = try labels.withUnsafeBufferPointer { (l) throws(DLError) -> Double in
            try model.trainStep(x: UnsafePointer(batch.data), batch: 8, targets: .labels(l.baseAddress!))
        }
        try check(x, "after a training step")

        let newWeight: [Float] = (0..<16 * 50).map { Float(($0 * 37) % 11) / 20 - 0.25 }
        try model.writeParameter(0, from: newWeight, count: newWeight.count)
        try check(x, "after writing the weight")
        let newBias: [Float] = (0..<16).map { Float($0) / 8 - 1 }
        try model.writeParameter(1, from: newBias, count: newBias.count)
        try check(x, "after writing the bias")

        var other = c
        other.background = 0.75
        try check(try Self.batch(other, seed: 34), "another background")
        try check(x, "the first background again")
    }

    /// Dense batches, and batches too small to be worth it, take the BLAS path.
    @Test func denseOrSmallBatchesStayDense() throws {
        var dense = Self.cases[2]
        dense.density = 0.6
        let layer = try Self.layer(dense, portable: false)
        _ = try layer.forward(try Self.batch(dense, seed: 1), training: true)
        #expect(!layer.forwardWasSparse)
        var small = Self.cases[2]
        small.rows = SparseInput.minimumRows - 1
        _ = try layer.forward(try Self.batch(small, seed: 1), training: true)
        #expect(!layer.forwardWasSparse)
        // The value to compress around is found by sampling, whatever the first entry is.
        var sparse = Self.cases[2]
        sparse.background = 0.75
        let x = try Self.batch(sparse, seed: 2)
        x.data[0] = 3
        _ = try layer.forward(x, training: true)
        #expect(layer.forwardWasSparse)
    }

    /// The forward's units (a chunk of inputs times a group of rows, each compressed and
    /// multiplied by one thread) on every thread count, through every change of path:
    /// sparse, then dense (a failed compression), then sparse again after the serial retry
    /// that follows a dense batch, and a batch dense in one chunk only. Each is checked
    /// against the formulas.
    @Test(arguments: [1, 2, 3, 8])
    func theForwardUnitsFollowEveryChangeOfPath(threads: Int) throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        Kernels.threads = threads
        var c = Self.cases[2]
        let layer = try Self.layer(c, portable: false)
        for (density, sparse) in [(0.19, true), (0.6, false), (0.6, false), (0.1, true), (0.19, true)] {
            c.density = density
            try Self.checkAgainstFormulas(layer, try Self.batch(c, seed: 3))
            #expect(layer.forwardWasSparse == sparse, "density \(density), \(threads) threads")
        }
        // Every entry of the first chunk differs from the background: the first unit alone
        // is over the budget (a quarter of the batch), the second is all background.
        c.density = 0
        let x = try Self.batch(c, seed: 3)
        for r in 0..<c.rows { for i in 0..<c.inputs / 2 { x.data[r * c.inputs + i] = Float(i % 7) - 3.5 } }
        try Self.checkAgainstFormulas(layer, x)
        #expect(!layer.forwardWasSparse)
    }

    /// A float32 model, whose first layer takes the sparse path, trains like the same model in
    /// float64 (always dense): the same losses step after step, to float32 accuracy.
    @Test func trainingMatchesTheFloat64Model() throws {
        let c = Case(rows: 32, inputs: 50, outputs: 16, background: -0.5, density: 0.2, bias: true)
        let layers: [(String, [String: SpecValue])] = [("linear", ["units": .int(16)]), ("relu", [:]), ("linear", ["units": .int(4)])]
        let single = try Model<Float>(spec: makeSpec(input: [50], layers: layers, seed: 3))
        let double = try Model<Double>(spec: makeSpec(input: [50], layers: layers, seed: 3, dtype: .float64))
        let first = try #require(single.layers[0] as? Linear<Float>)
        #expect(first.sparseInput != nil && first.weight.storage is TransposedMatrix)
        #expect(single.parameters[0].values == double.parameters[0].values.map { Float($0) }, "the same initial weights")
        var rng = RandomGenerator(seed: 8)
        for step in 0..<20 {
            let x = try Self.batch(c, seed: UInt64(100 + step))
            let labels = (0..<c.rows).map { _ in Int32(rng.below(4)) }
            let l32 = try labels.withUnsafeBufferPointer { (l) throws(DLError) in
                try single.trainStep(x: UnsafePointer(x.data), batch: c.rows, targets: .labels(l.baseAddress!))
            }
            #expect((single.layers[0] as? Linear<Float>)?.forwardWasSparse == true)
            let l64 = try labels.withUnsafeBufferPointer { (l) throws(DLError) in
                try double.trainStep(x: UnsafePointer(x.data), batch: c.rows, targets: .labels(l.baseAddress!))
            }
            #expect(abs(l32 - l64) < 1e-4 * max(1, abs(l64)), "step \(step): float32 \(l32) vs float64 \(l64)")
        }
        for (p32, p64) in zip(single.parameters, double.parameters) {
            #expect(maxAbsDiff(p32.values.map(Double.init), p64.values) < 1e-4, "\(p32.name) after 20 steps")
        }
    }
}

/// The kernels' thread pool splits work so that each output is computed by one thread in the
/// serial order: training gives the same bits with any number of threads, whether the steps
/// are called one by one or `trainEpoch` gathers shuffled batches (on the kernels' threads).
@Suite(.serialized) struct KernelThreadTests {
    func train(threads: Int) throws -> [[Float]] {
        Kernels.threads = threads
        let layers: [(String, [String: SpecValue])] = [("linear", ["units": .int(128)]), ("relu", [:]), ("linear", ["units": .int(10)])]
        let model = try Model<Float>(spec: makeSpec(input: [784], layers: layers, seed: 5))
        let c = SparseInputTests.Case(rows: 64, inputs: 784, outputs: 128, background: -0.4242, density: 0.19, bias: true)
        var rng = RandomGenerator(seed: 9)
        var x: [Float] = []
        for step in 0..<4 {
            let batch = try SparseInputTests.batch(c, seed: UInt64(step))
            x += batch.array
            let labels = (0..<c.rows).map { _ in Int32(rng.below(10)) }
            _ = try labels.withUnsafeBufferPointer { (l) throws(DLError) in
                try model.trainStep(x: UnsafePointer(batch.data), batch: c.rows, targets: .labels(l.baseAddress!))
            }
            #expect((model.layers[0] as? Linear<Float>)?.forwardWasSparse == true)
        }
        let labels = (0..<x.count / 784).map { _ in Int32(rng.below(10)) }
        model.backgroundLoading = false
        _ = try x.withUnsafeBufferPointer { xp in
            try labels.withUnsafeBufferPointer { lp in
                try model.trainEpoch(x: xp.baseAddress!, targets: .labels(lp.baseAddress!), count: labels.count, batchSize: 50)
            }
        }
        var single = [Float](repeating: 0, count: 10)
        try x.withUnsafeBufferPointer { (xp) throws(DLError) in try model.predict(x: xp.baseAddress!, count: 1, into: &single) }
        return model.parameters.map { $0.value.array } + [single]
    }

    @Test func trainingIsTheSameWithAnyNumberOfThreads() throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let one = try train(threads: 1)
        for threads in [2, 3, 8] {
            #expect(try train(threads: threads) == one, "\(threads) threads")
        }
        Kernels.threads = 0
        #expect(Kernels.threads == 1, "clamped to at least one")
        Kernels.threads = 100
        #expect(Kernels.threads == 8, "clamped to at most eight")
    }
}

/// The input checks and conversion, which run in C (vectorised) for float32 and float64.
@Suite struct InputKernelTests {
    func finite<T: DLScalar>(_ values: [T]) -> Bool {
        values.withUnsafeBufferPointer { Kernels.allFinite($0.baseAddress!, $0.count) }
    }

    @Test func allFiniteFindsEveryBadValueAnywhere() {
        for n in [1, 7, 8, 9, 31, 100] {
            let good32 = (0..<n).map { Float($0) - 3.5 }
            let good64 = good32.map(Double.init)
            #expect(finite(good32) && finite(good64))
            for position in [0, n / 2, n - 1] {
                for bad in [Float.nan, .infinity, -.infinity, .signalingNaN] {
                    var x = good32
                    x[position] = bad
                    #expect(!finite(x), "n \(n), \(bad) at \(position)")
                    var y = good64
                    y[position] = Double(bad)
                    #expect(!finite(y), "n \(n), \(bad) at \(position) (float64)")
                }
            }
        }
        #expect(finite([Float.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, -0.0]))
        #expect(finite([Double.greatestFiniteMagnitude, .leastNonzeroMagnitude]))
    }

    /// Arrays of 2^17 elements and more are checked on the kernel threads.
    @Test func allFiniteFindsABadValueInAnyThreadsShare() {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let n = 300_001
        var x = (0..<n).map { Float($0 % 97) - 48 }
        for threads in [1, 2, 3, 8] {
            Kernels.threads = threads
            #expect(finite(x))
            for position in [0, 65_535, 65_536, n / 2, 2 * n / 3, n - 1] {
                x[position] = .nan
                #expect(!finite(x), "\(threads) threads, NaN at \(position)")
                x[position] = -.infinity
                #expect(!finite(x), "\(threads) threads, -inf at \(position)")
                x[position] = 1
            }
        }
    }

    /// One sample through a layer that keeps W (out x in): the vector kernel (AVX-512, or AVX2,
    /// which test.sh also runs with DL_NO_AVX512=1) gives the plain C kernel's bits, and both
    /// the float64 dot products to float32 rounding, on shapes with every tail (rows not a
    /// multiple of 4, inputs not a multiple of 16 or of 8, a leading dimension wider than the
    /// row).
    /// Products of 16k multiply-adds or more (the last three shapes) share their rows among
    /// the kernel threads: the same bits on 1 to 8 of them, and with the affine epilogue
    /// (times a scale, plus a base: two roundings) the bits of that formula on the product,
    /// at every call while the boundaries between shares move with the measured balance,
    /// and while each thread reads its rows of W from the last to the first every other call.
    @Test(arguments: [(1, 1), (3, 7), (4, 8), (6, 24), (7, 40), (5, 128), (10, 128), (10, 131), (9, 300), (128, 784),
                      (37, 1000), (301, 129)])
    func matrixTimesVectorMatchesTheFormulaWithBothKernels(rows: Int, inputs: Int) {
        var rng = RandomGenerator(seed: UInt64(rows * 1000 + inputs))
        let lda = inputs + 3
        let a = (0..<rows * lda).map { _ in Float(rng.normal()) }, x = (0..<inputs).map { _ in Float(rng.normal()) }
        var vector = [Float](repeating: 0, count: rows), plain = vector
        dlk_matrix_vector_f32(a, Int64(rows), Int64(inputs), Int64(lda), x, &vector, 0)
        dlk_matrix_vector_f32(a, Int64(rows), Int64(inputs), Int64(lda), x, &plain, 1)
        #expect(vector.map(\.bitPattern) == plain.map(\.bitPattern))
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let scale: Float = -0.7, base = (0..<rows).map { _ in Float(rng.normal()) }
        let affine = vector.indices.map { vector[$0] * scale + base[$0] }
        for threads in [1, 2, 3, 8] {
            Kernels.threads = threads
            for portable: Int32 in [0, 1] {
                for call in 0..<40 {
                    var shared = [Float](repeating: .nan, count: rows), scaled = shared
                    dlk_matrix_vector_f32(a, Int64(rows), Int64(inputs), Int64(lda), x, &shared, portable)
                    dlk_matrix_vector_affine_f32(a, Int64(rows), Int64(inputs), Int64(lda), x, scale, base, &scaled, portable)
                    #expect(shared.map(\.bitPattern) == vector.map(\.bitPattern), "\(threads) threads, plain C \(portable), call \(call)")
                    #expect(scaled.map(\.bitPattern) == affine.map(\.bitPattern), "\(threads) threads, plain C \(portable), call \(call)")
                }
            }
        }
        for r in 0..<rows {
            var expected = 0.0, scale = 0.0
            for i in 0..<inputs {
                let term = Double(a[r * lda + i]) * Double(x[i])
                expected += term
                scale += abs(term)
            }
            #expect(abs(Double(vector[r]) - expected) <= 1e-6 * max(scale, 1), "row \(r)")
        }
    }

    @Test func affineConversionRoundsLikeTheFormula() {
        let src: [Float] = (0..<37).map { Float($0 * 7) }
        var dst = [Float](repeating: 0, count: src.count)
        let a: Float = 1 / 255 / 0.3081, b: Float = -0.1307 / 0.3081
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in Kernels.convertAffine(s.baseAddress!, d.baseAddress!, s.count, a, b) }
        }
        // x * a + b with two roundings (no fused multiply-add), exactly
        for i in 0..<src.count { #expect(dst[i] == src[i] * a + b) }
    }
}

/// The cost model's two looks at a batch, against plain Swift: the background guess
/// (`SparseInput.likelyBackground`, AVX2 and plain C) and the counts of entries off it and off zero
/// (`dlk_sample_density`, whose AVX2 loop keeps per-lane counters and must agree with the
/// plain C one at every length, its tail included).
@Suite struct SparseCostModelTests {
    /// The rule the guess documents, written the obvious way.
    static func mostFrequentOf16(_ x: [Float]) -> (value: Float, matches: Int) {
        let picked = (0..<16).map { x[$0 * x.count / 16] }
        var best = picked[0], bestCount = 0
        for candidate in picked {
            let n = picked.filter { $0 == candidate }.count
            if n > bestCount { (best, bestCount) = (candidate, n) }
        }
        return (best, bestCount)
    }

    @Test func theBackgroundGuessIsTheMostFrequentOf16Picks() {
        var rng = RandomGenerator(seed: 41)
        let palette: [Float] = [0, -0.0, 1, -0.4242, .nan, 3e38, -7]
        for count in [1, 2, 15, 16, 17, 100, 784, 1001] {
            for trial in 0..<200 {
                // Few distinct values, so that ties, majorities and NaN (never equal) all occur;
                // one trial in four, values that all differ (no background: one match).
                let x = (0..<count).map { _ in
                    trial % 4 == 3 ? Float(rng.normal()) : palette[Int(rng.uniform() * Double(palette.count)) % palette.count]
                }
                let want = Self.mostFrequentOf16(x)
                for plainC in [false, true] {
                    let got = x.withUnsafeBufferPointer {
                        SparseInput.likelyBackgroundAndMatches($0.baseAddress!, count: count, plainC: plainC)
                    }
                    let alone = x.withUnsafeBufferPointer {
                        SparseInput.likelyBackground($0.baseAddress!, count: count, plainC: plainC)
                    }
                    #expect(got.value.bitPattern == want.value.bitPattern || (got.value.isNaN && want.value.isNaN),
                            "count \(count), plain C \(plainC): \(got.value) against \(want.value)")
                    #expect(got.matches == want.matches, "count \(count), plain C \(plainC): \(got.matches) matches against \(want.matches)")
                    #expect(alone.bitPattern == got.value.bitPattern || (alone.isNaN && got.value.isNaN))
                }
            }
        }
    }

    @Test func densityCountsAgreeWithPlainCountsAtEveryLength() {
        var rng = RandomGenerator(seed: 43)
        for cols in Array(0...40) + [63, 64, 65, 784, 1000] {
            for v: Float in [0, -0.4242, .nan] {
                let rows = 3
                let x = (0..<(rows * cols)).map { _ -> Float in
                    let u = rng.uniform()
                    return u < 0.4 ? v : u < 0.5 ? 0 : u < 0.55 ? -0.0 : u < 0.6 ? .nan : Float(rng.normal())
                }
                var wantV = 0, wantZero = 0
                for value in x { wantV += value != v ? 1 : 0; wantZero += value != 0 ? 1 : 0 }
                for plain: Int32 in [0, 1] {
                    var notV: Int64 = -1, notZero: Int64 = -1
                    x.withUnsafeBufferPointer {
                        dlk_sample_density($0.baseAddress!, Int64(rows), Int64(cols), v, Int64(rows), &notV, &notZero, plain)
                    }
                    #expect(notV == Int64(wantV) && notZero == Int64(wantZero),
                            "\(cols) columns, v \(v), plain \(plain): \(notV), \(notZero) against \(wantV), \(wantZero)")
                }
            }
        }
    }
}
