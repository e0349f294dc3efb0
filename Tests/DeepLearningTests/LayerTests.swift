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

@Suite struct ActivationTests {
    @Test func reluMatchesTheTutorial() throws {
        let relu = try Activation<Double>(.relu, shape: [5])
        let y = try relu.forward(try tensor([[-2, -1, 0, 1, 2]]), training: true)
        #expect(y.array == [0, 0, 0, 1, 2])
        let dx = try relu.backward(try tensor([[1, 1, 1, 1, 1]]), needInputGradient: true)!
        #expect(dx.array == [0, 0, 0, 1, 1])
    }

    @Test func sigmoidValues() throws {
        let s = try Activation<Double>(.sigmoid, shape: [3])
        let y = try s.forward(try tensor([[0, 1, -1]]), training: true).array
        #expect(maxAbsDiff(y, [0.5, 0.7310585786, 0.2689414214]) < 1e-9)
        let y2 = try s.forward(try tensor([[-2, 0, 2]]), training: true).array
        #expect(maxAbsDiff(y2, [0.1192029220, 0.5, 0.8807970780]) < 1e-9)
        // dx = dy * y * (1 - y)
        let dx = try s.backward(try tensor([[1, 2, 3]]), needInputGradient: true)!.array
        #expect(maxAbsDiff(dx, zip([1.0, 2, 3], y2).map { $0 * $1 * (1 - $1) }) < 1e-12)
        // No overflow far out in either direction.
        let extreme = try s.forward(try tensor([[-800, 800]]), training: true).array
        #expect(extreme == [0, 1])
    }

    @Test func tanhValues() throws {
        let t = try Activation<Double>(.tanh, shape: [3])
        #expect(maxAbsDiff(try t.forward(try tensor([[0, 1, -1]]), training: true).array, [0, 0.7615941560, -0.7615941560]) < 1e-9)
        let y = try t.forward(try tensor([[-2, 0, 2]]), training: true).array
        #expect(maxAbsDiff(y, [-0.9640275801, 0, 0.9640275801]) < 1e-9)
        let dx = try t.backward(try tensor([[1, 1, 1]]), needInputGradient: true)!.array
        #expect(maxAbsDiff(dx, y.map { 1 - $0 * $0 }) < 1e-12)
    }

    @Test func leakyReLU() throws {
        let l = try Activation<Double>(.leakyReLU(alpha: 0.1), shape: [4])
        #expect(maxAbsDiff(try l.forward(try tensor([[-2, -0.5, 0, 3]]), training: true).array, [-0.2, -0.05, 0, 3]) < 1e-15)
        #expect(maxAbsDiff(try l.backward(try tensor([[1, 2, 3, 4]]), needInputGradient: true)!.array, [0.1, 0.2, 0.3, 4]) < 1e-15)
    }

    @Test func softmaxRowsSumToOne() throws {
        let s = try Softmax<Double>(shape: [3])
        let y = rows(try s.forward(try tensor([[1, 2, 3], [1000, 1000, 1000]]), training: true))
        let e = [1.0, 2, 3].map { Double.exp($0) }
        let z = e.reduce(0, +)
        #expect(maxAbsDiff(y[0], e.map { $0 / z }) < 1e-12)
        #expect(maxAbsDiff(y[1], [1.0 / 3, 1.0 / 3, 1.0 / 3]) < 1e-12)
    }

    @Test(arguments: ["relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
    func gradientCheckIsExcellent(type: String) throws {
        var rng = RandomGenerator(seed: 5)
        var context = LayerContext(inputShape: [6], index: 0, defaultInitializer: .heNormal, rng: rng)
        let layer: any Layer<Double> = try LayerRegistry.factory(type)!.make(LayerRegistry.factory(type)!.kind.spec(), &context)
        // Keep inputs away from ReLU's kink so centred differences stay on one side.
        let x = try randomTensor([3, 6], &rng)
        for i in 0..<x.count where abs(x.data[i]) < 1e-3 { x.data[i] = 0.5 }
        let result = try checkLayer(layer, input: x)
        #expect(result.input < 1e-7, "\(type): \(result.input)")
    }
}
