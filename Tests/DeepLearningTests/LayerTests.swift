import Testing
@testable import DeepLearning

@Suite struct LinearTests {
    /// y = x W^T + b, dW = dy^T x, db = sum dy, dx = dy W, against naive loops.
    @Test func forwardAndBackwardMatchTheFormulas() throws {
        let layer = try Linear<Double>(inFeatures: 3, outFeatures: 2)
        let w: [[Double]] = [[1, 2, 3], [-1, 0.5, 2]]
        let b: [Double] = [0.5, -1]
        for o in 0..<2 { for i in 0..<3 { layer.weight.value.data[o * 3 + i] = w[o][i] } }
        for o in 0..<2 { layer.bias!.value.data[o] = b[o] }
        let xs: [[Double]] = [[1, 0, -1], [2, 1, 0.5], [0, 0, 1], [-3, 2, 1]]
        let y = rows(try layer.forward(try tensor(xs), training: true))
        for n in 0..<4 {
            for o in 0..<2 {
                let expected = (0..<3).reduce(b[o]) { $0 + xs[n][$1] * w[o][$1] }
                #expect(abs(y[n][o] - expected) < 1e-12)
            }
        }
        let dys: [[Double]] = [[1, 2], [0.5, -1], [0, 1], [3, 0]]
        let dx = rows(try layer.backward(try tensor(dys), needInputGradient: true)!)
        for n in 0..<4 { for i in 0..<3 {
            #expect(abs(dx[n][i] - (0..<2).reduce(0) { $0 + dys[n][$1] * w[$1][i] }) < 1e-12)
        } }
        for o in 0..<2 {
            for i in 0..<3 {
                #expect(abs(layer.weight.grad.data[o * 3 + i] - (0..<4).reduce(0) { $0 + dys[$1][o] * xs[$1][i] }) < 1e-12)
            }
            #expect(abs(layer.bias!.grad.data[o] - (0..<4).reduce(0) { $0 + dys[$1][o] }) < 1e-12)
        }
    }

    /// A single sample takes the matrix-vector path; it must agree with the batched one.
    @Test func oneSampleMatchesTheBatch() throws {
        var rng = RandomGenerator(seed: 4)
        let layer = try Linear<Double>(inFeatures: 7, outFeatures: 5)
        Initializer.heNormal.fill(layer.weight.value, fanIn: 7, fanOut: 5, rng: &rng)
        for i in 0..<5 { layer.bias!.value.data[i] = rng.normal() }
        let batch = try randomTensor([3, 7], &rng)
        let all = rows(try layer.forward(batch, training: false))
        for r in 0..<3 {
            let one = try Tensor<Double>(shape: [1, 7], values: Array(rows(batch)[r]))
            #expect(maxAbsDiff(try layer.forward(one, training: false).array, all[r]) < 1e-12)
        }
    }

    /// A float32 layer away from the model's input multiplies batches by a transposed copy
    /// of W (with the library's kernel where the CPU has AVX2) kept while W is unchanged: in
    /// training and in evaluation the outputs must follow every change of W (an optimizer's
    /// step, a load), agreeing with float64 loops to float32 rounding.
    @Test func batchesFollowEveryChangeOfTheWeight() throws {
        var rng = RandomGenerator(seed: 21)
        let (inputs, outputs, batch) = (300, 20, 6)
        let layer = try Linear<Float>(inFeatures: inputs, outFeatures: outputs)
        let scratch = try InferenceScratch<Float>()
        let x = try Tensor<Float>(shape: [batch, inputs], values: try randomTensor([batch, inputs], &rng).array.map(Float.init))
        for round in 0..<3 {
            for i in 0..<layer.weight.value.count { layer.weight.value.data[i] = Float(rng.normal()) }
            for i in 0..<outputs { layer.bias!.value.data[i] = Float(rng.normal()) }
            layer.weight.changed()
            layer.bias!.changed()
            var expected = [Double](repeating: 0, count: batch * outputs)
            for r in 0..<batch {
                for o in 0..<outputs {
                    expected[r * outputs + o] = (0..<inputs).reduce(Double(layer.bias!.value.data[o])) {
                        $0 + Double(x.data[r * inputs + $1]) * Double(layer.weight.value.data[o * inputs + $1])
                    }
                }
            }
            let scale = expected.map(abs).max() ?? 1
            let trained = try layer.forward(x, training: true).array.map(Double.init)
            let inferred = try layer.infer(x, scratch: scratch).array.map(Double.init)
            #expect(maxAbsDiff(trained, expected) / scale < 1e-5, "round \(round): forward")
            #expect(maxAbsDiff(inferred, expected) / scale < 1e-5, "round \(round): infer")
        }
    }

    @Test func shapesAreTheTutorials() throws {
        let layer = try Linear<Float>(inFeatures: 784, outFeatures: 128)
        #expect(layer.weight.value.shape == [128, 784])
        #expect(layer.bias!.value.shape == [128])
        let x = try Tensor<Float>(shape: [32, 784])
        #expect(try layer.forward(x, training: true).shape == [32, 128])
        let dx = try layer.backward(try Tensor<Float>(shape: [32, 128]), needInputGradient: true)
        #expect(dx?.shape == [32, 784])
    }

    @Test func gradientCheckIsExcellent() throws {
        var rng = RandomGenerator(seed: 11)
        let layer = try Linear<Double>(inFeatures: 10, outFeatures: 5)
        Initializer.xavierNormal.fill(layer.weight.value, fanIn: 10, fanOut: 5, rng: &rng)
        for i in 0..<5 { layer.bias!.value.data[i] = rng.normal() }
        let result = try checkLayer(layer, input: try randomTensor([4, 10], &rng))
        #expect(result.input < 1e-7)
        #expect(result.parameters["weight"]! < 1e-7)
        #expect(result.parameters["bias"]! < 1e-7)
    }
}
