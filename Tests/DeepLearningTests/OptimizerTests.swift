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

/// The float32 updates run in C, eight lanes at a time; they must give exactly the bits of
/// the scalar Swift loops (the same formulas, rounded in the same order), on lengths that
/// leave every tail, with weight decay and with state carried over several steps.
@Suite struct OptimizerKernelTests {
    static let lengths = [1, 7, 8, 9, 64, 1003]

    /// Parameters, gradients and two state arrays of length n, all random.
    func arrays(_ n: Int, seed: UInt64) -> [[Float]] {
        var rng = RandomGenerator(seed: seed)
        // the state arrays (Adam's m and v, RMSprop's s) nonnegative, as v and s always are
        return (0..<4).map { k in (0..<n).map { _ in k >= 2 ? Float(abs(rng.normal())) * 0.1 : Float(rng.normal()) } }
    }

    /// Runs `update` three times on copies of the same arrays, once through C and once
    /// through the Swift loops, and compares every array bit for bit.
    func same(_ n: Int, _ update: (_ a: [UnsafeMutablePointer<Float>], _ portable: Bool, _ step: Int) -> Void) {
        let start = arrays(n, seed: UInt64(n))
        let c = start.map { values in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(from: values, count: n)
            return p
        }
        let swift = start.map { values in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(from: values, count: n)
            return p
        }
        defer { for p in c + swift { p.deallocate() } }
        for step in 1...3 {
            update(c, false, step)
            update(swift, true, step)
        }
        var differing = 0, nonFinite = 0
        for (a, b) in zip(c, swift) {
            for i in 0..<n {
                if a[i].bitPattern != b[i].bitPattern { differing += 1 }
                if !a[i].isFinite { nonFinite += 1 }
            }
        }
        #expect(differing == 0, "length \(n): \(differing) values differ")
        #expect(nonFinite == 0, "length \(n)")
        #expect(Array(UnsafeBufferPointer(start: c[0], count: n)) != start[0], "the parameters moved")
    }

    @Test(arguments: lengths) func sgd(n: Int) {
        same(n) { a, portable, _ in Kernels.sgdStep(a[0], a[1], n, lr: 0.05, weightDecay: 0.01, portable: portable) }
    }

    @Test(arguments: lengths) func momentum(n: Int) {
        same(n) { a, portable, _ in
            Kernels.momentumStep(a[0], a[1], a[2], n, lr: 0.05, momentum: 0.9, weightDecay: 0.01, portable: portable)
        }
    }

    @Test(arguments: lengths) func adam(n: Int) {
        same(n) { a, portable, t in
            Kernels.adamStep(a[0], a[1], a[2], a[3], n, lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8,
                             weightDecay: 0.01, t: t, portable: portable)
        }
    }

    @Test(arguments: lengths) func rmsprop(n: Int) {
        same(n) { a, portable, _ in
            Kernels.rmspropStep(a[0], a[1], a[2], n, lr: 0.01, rho: 0.99, eps: 1e-8, weightDecay: 0.01, portable: portable)
        }
    }
}
