import Testing
@testable import DeepLearning

/// One or more optimizer steps against the update rules written out in plain Double.
@Suite struct OptimizerTests {
    let p0: [Double] = [0.5, -1.0, 2.0]
    let grads: [[Double]] = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.0, 0.2]]

    func run(_ function: Optimizer<Double>.Function, lr: Double, wd: Double = 0) throws -> [Double] {
        let p = try Parameter<Double>("w", shape: [3])
        for i in 0..<3 { p.value.data[i] = p0[i] }
        let opt = try Optimizer(function, learningRate: lr, weightDecay: wd, parameters: [p])
        for g in grads {
            for i in 0..<3 { p.grad.data[i] = g[i] }
            opt.update([p])
        }
        #expect(opt.step == grads.count)
        return p.value.array
    }

    @Test func sgdWithWeightDecay() throws {
        var p = p0
        for g in grads { for i in 0..<3 { p[i] -= 0.1 * (g[i] + 0.01 * p[i]) } }
        #expect(maxAbsDiff(try run(.sgd(momentum: 0), lr: 0.1, wd: 0.01), p) < 1e-15)
    }

    @Test func momentumAsTheTutorialWritesIt() throws {
        var p = p0, v = [0.0, 0, 0]
        for g in grads { for i in 0..<3 { v[i] = 0.9 * v[i] - 0.1 * g[i]; p[i] += v[i] } }
        #expect(maxAbsDiff(try run(.sgd(momentum: 0.9), lr: 0.1), p) < 1e-15)
    }

    @Test func adamWithBiasCorrection() throws {
        var p = p0, m = [0.0, 0, 0], v = [0.0, 0, 0]
        for (t, g) in grads.enumerated() {
            for i in 0..<3 {
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                let mHat = m[i] / (1 - Double.pow(0.9, Double(t + 1)))
                let vHat = v[i] / (1 - Double.pow(0.999, Double(t + 1)))
                p[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
            }
        }
        #expect(maxAbsDiff(try run(.adam(beta1: 0.9, beta2: 0.999, eps: 1e-8), lr: 0.01), p) < 1e-12)
    }

    @Test func rmsprop() throws {
        var p = p0, s = [0.0, 0, 0]
        for g in grads { for i in 0..<3 {
            s[i] = 0.99 * s[i] + 0.01 * g[i] * g[i]
            p[i] -= 0.01 * g[i] / (s[i].squareRoot() + 1e-8)
        } }
        #expect(maxAbsDiff(try run(.rmsprop(rho: 0.99, eps: 1e-8), lr: 0.01), p) < 1e-12)
    }
}
