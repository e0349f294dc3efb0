import Testing
import CDeepLearningKernels
@testable import DeepLearning

// Convolutional layers, batch norm and dropout against naive references written here, their
// float64 gradient checks, and whole CNN models (gradients, determinism, checkpoints, specs).

// MARK: - Helpers

/// A layer built by its factory as a model would, with the kind's defaults filled in.
private func build(_ type: String, _ options: [String: SpecValue] = [:], input: [Int], seed: UInt64 = 1) throws
    -> (layer: any Layer<Double>, random: RandomSource) {
    let factory = try #require(LayerRegistry.factory(type))
    var context = LayerContext(inputShape: input, index: 0, defaultInitializer: .heNormal, rng: RandomGenerator(seed: seed))
    let layer: any Layer<Double> = try factory.make(factory.kind.spec(options, path: "layers[0]"), &context)
    return (layer, context.random)
}

private func randomValues(_ n: Int, _ rng: inout RandomGenerator) -> [Double] { (0..<n).map { _ in rng.normal() } }

/// Sets every parameter of `layer` to normal random values.
private func randomize(_ layer: any Layer<Double>, _ rng: inout RandomGenerator) {
    for p in layer.parameters { for i in 0..<p.value.count { p.value.data[i] = rng.normal() } }
}

/// Direct convolution: y[b, f, oy, ox] = bias[f] + sum over c, i, j of
/// x[b, c, oy sh - ph + i, ox sw - pw + j] w[f, c, i, j], zero outside the image.
private func naiveConv(_ x: [Double], _ w: [Double], _ bias: [Double]?, batch: Int, channels: Int, height: Int, width: Int,
                       filters: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) -> [Double] {
    let oh = (height + 2 * padding.0 - kernel.0) / stride.0 + 1, ow = (width + 2 * padding.1 - kernel.1) / stride.1 + 1
    var y: [Double] = []
    for b in 0..<batch { for f in 0..<filters { for oy in 0..<oh { for ox in 0..<ow {
        var s = bias?[f] ?? 0
        for c in 0..<channels { for i in 0..<kernel.0 { for j in 0..<kernel.1 {
            let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
            guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
            s += x[((b * channels + c) * height + iy) * width + ix] * w[((f * channels + c) * kernel.0 + i) * kernel.1 + j]
        } } }
        y.append(s)
    } } } }
    return y
}

/// Direct pooling of each plane: the maximum over the window's input elements, or their sum
/// divided by kh kw.
private func naivePool(_ x: [Double], max: Bool, planes: Int, height: Int, width: Int,
                       kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) -> [Double] {
    let oh = (height + 2 * padding.0 - kernel.0) / stride.0 + 1, ow = (width + 2 * padding.1 - kernel.1) / stride.1 + 1
    var y: [Double] = []
    for q in 0..<planes { for oy in 0..<oh { for ox in 0..<ow {
        var values: [Double] = []
        for i in 0..<kernel.0 { for j in 0..<kernel.1 {
            let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
            if iy >= 0, iy < height, ix >= 0, ix < width { values.append(x[(q * height + iy) * width + ix]) }
        } }
        y.append(max ? values.max()! : values.reduce(0, +) / Double(kernel.0 * kernel.1))
    } } }
    return y
}

private func pair(_ v: (Int, Int)) -> SpecValue { .ints([v.0, v.1]) }

/// Convolution cases: batch, channels, height, width, filters, kernel, stride, padding.
private let convCases: [(Int, Int, Int, Int, Int, (Int, Int), (Int, Int), (Int, Int))] = [
    (2, 3, 7, 6, 4, (3, 3), (1, 1), (0, 0)),
    (3, 2, 8, 9, 5, (3, 3), (2, 2), (1, 1)),
    (2, 1, 5, 6, 3, (5, 2), (1, 2), (2, 1)),
    (2, 2, 6, 6, 2, (2, 3), (3, 1), (0, 2)),
    (1, 4, 4, 4, 3, (1, 1), (1, 1), (0, 0)),
]

// MARK: - Forward passes against references

@Suite struct ConvolutionTests {
    @Test(arguments: 0..<convCases.count)
    func conv2dMatchesDirectConvolution(which: Int) throws {
        let (batch, channels, height, width, filters, kernel, stride, padding) = convCases[which]
        var rng = RandomGenerator(seed: UInt64(which))
        // The whole batch in one product, one sample per product, and one sample a piece.
        for mode in ["whole", "grouped", "pieces of 1"] {
            let (layer, _) = try build("conv2d", ["filters": .int(filters), "kernel_size": pair(kernel), "stride": pair(stride),
                                                  "padding": pair(padding)], input: [channels, height, width])
            let conv = try #require(layer as? Conv2D<Double>)
            if mode == "grouped" { conv.columnLimit = 1 }
            if mode == "pieces of 1" { conv.pieceElements = 1 }
            randomize(layer, &rng)
            let samples = batch + 1
            let x = try randomTensor([samples, channels, height, width], &rng)
            let y = try layer.forward(x, training: true)
            let expected = naiveConv(x.array, conv.weight.value.array, conv.bias!.value.array, batch: samples, channels: channels,
                                     height: height, width: width, filters: filters, kernel: kernel, stride: stride, padding: padding)
            #expect(y.shape == [samples] + layer.outputShape)
            #expect(y.count == expected.count)
            #expect(maxAbsDiff(y.array, expected) < 1e-12, "case \(which) \(mode)")
        }
    }

    /// Float32 convolutions take the library's own products where the CPU has AVX2 (a sample
    /// at a time, straight into y and into the input gradient's columns) and OpenBLAS
    /// elsewhere; float64 always OpenBLAS. On the same (float32-rounded) values, the forward
    /// and every gradient must agree to float32's rounding, whole, in groups of one sample,
    /// in pieces of one and of two, and with the weight gradient in slices of one sample.
    @Test(arguments: 0..<convCases.count)
    func float32AgreesWithFloat64(which: Int) throws {
        let (batch, channels, height, width, filters, kernel, stride, padding) = convCases[which]
        let factory = try #require(LayerRegistry.factory("conv2d"))
        let spec = try factory.kind.spec(["filters": .int(filters), "kernel_size": pair(kernel), "stride": pair(stride),
                                          "padding": pair(padding)], path: "layers[0]")
        var rng = RandomGenerator(seed: 300 + UInt64(which))
        func rounded(_ n: Int) -> [Double] { (0..<n).map { _ in Double(Float(rng.normal())) } }
        let samples = batch + 1
        let x = rounded(samples * channels * height * width)
        func relativeError(_ a: [Float], _ b: [Double]) -> Double {
            maxAbsDiff(a.map(Double.init), b) / max(b.map(abs).max() ?? 0, 1e-30)
        }
        for mode in ["whole", "grouped", "pieces of 1", "pieces of 2", "slices"] {
            var c64 = LayerContext(inputShape: [channels, height, width], index: 0, defaultInitializer: .heNormal,
                                   rng: RandomGenerator(seed: 1))
            var c32 = c64
            let l64: any Layer<Double> = try factory.make(spec, &c64)
            let l32: any Layer<Float> = try factory.make(spec, &c32)
            let (conv64, conv32) = (try #require(l64 as? Conv2D<Double>), try #require(l32 as? Conv2D<Float>))
            let columns = channels * kernel.0 * kernel.1 * conv64.window.outputPlane
            switch mode {
            case "grouped": (conv64.columnLimit, conv32.columnLimit) = (1, 1)
            case "pieces of 1": (conv64.pieceElements, conv32.pieceElements) = (1, 1)
            case "pieces of 2": (conv64.pieceElements, conv32.pieceElements) = (2 * columns, 2 * columns)
            case "slices": (conv64.sliceWork, conv32.sliceWork) = (1, 1)
            default: break
            }
            for (p64, p32) in zip(l64.parameters, l32.parameters) {
                for (i, v) in rounded(p64.value.count).enumerated() { p64.value.data[i] = v; p32.value.data[i] = Float(v) }
            }
            let y64 = try l64.forward(try Tensor(shape: [samples, channels, height, width], values: x), training: true)
            let y32 = try l32.forward(try Tensor(shape: [samples, channels, height, width], values: x.map(Float.init)),
                                      training: true)
            #expect(relativeError(y32.array, y64.array) < 1e-6, "case \(which) \(mode): y")
            let dy = rounded(y64.count)
            let dx64 = try #require(try l64.backward(try Tensor(shape: y64.shape, values: dy), needInputGradient: true))
            let dx32 = try #require(try l32.backward(try Tensor(shape: y64.shape, values: dy.map(Float.init)),
                                                     needInputGradient: true))
            #expect(relativeError(dx32.array, dx64.array) < 1e-6, "case \(which) \(mode): dx")
            for (p64, p32) in zip(l64.parameters, l32.parameters) {
                #expect(relativeError(p32.grad.array, p64.grad.array) < 1e-6, "case \(which) \(mode): \(p64.name)")
            }
        }
    }

    @Test func outputShapeAndParameters() throws {
        let (layer, _) = try build("conv2d", ["filters": .int(8), "kernel_size": .int(3), "stride": .int(2), "padding": .int(1),
                                              "bias": .bool(false)], input: [3, 32, 31])
        #expect(layer.outputShape == [8, 16, 16])
        #expect(layer.parameters.map(\.name) == ["weight"])
        #expect(layer.parameters[0].value.shape == [8, 3, 3, 3])
    }

    @Test(arguments: [true, false])
    func poolingMatchesDirectPooling(max: Bool) throws {
        var rng = RandomGenerator(seed: 4)
        let cases: [((Int, Int), (Int, Int)?, (Int, Int))] = [((2, 2), nil, (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                                             ((3, 2), (1, 2), (1, 0)), ((2, 3), (3, 1), (1, 1))]
        for (kernel, stride, padding) in cases {
            var options: [String: SpecValue] = ["kernel_size": pair(kernel), "padding": pair(padding)]
            if let stride { options["stride"] = pair(stride) }
            let (layer, _) = try build(max ? "max_pool2d" : "avg_pool2d", options, input: [3, 7, 8])
            let x = try randomTensor([2, 3, 7, 8], &rng)
            let y = try layer.forward(x, training: false)
            let expected = naivePool(x.array, max: max, planes: 6, height: 7, width: 8,
                                     kernel: kernel, stride: stride ?? kernel, padding: padding)
            #expect(y.shape == [2] + layer.outputShape)
            #expect(maxAbsDiff(y.array, expected) < 1e-14, "\(kernel) \(String(describing: stride)) \(padding)")
        }
    }

    /// Max pooling sends each gradient to its window's maximum only.
    @Test func maxPoolBackwardRoutesToTheMaximum() throws {
        let (layer, _) = try build("max_pool2d", ["kernel_size": .int(2)], input: [1, 2, 4])
        let x = try Tensor<Double>(shape: [1, 1, 2, 4], values: [1, 5, -1, -2,
                                                                  3, 2, -3, -4])
        #expect(try layer.forward(x, training: true).array == [5, -1])
        let dx = try layer.backward(try Tensor(shape: [1, 1, 1, 2], values: [10, 20]), needInputGradient: true)!
        #expect(dx.array == [0, 10, 20, 0, 0, 0, 0, 0])
    }

    /// On ties the first element in reading order wins, in 2x2 windows with stride 2 (which
    /// have a loop of their own) as in the others.
    @Test(arguments: [2, 3]) func maxPoolTiesGoToTheFirstElement(kernel: Int) throws {
        let (layer, _) = try build("max_pool2d", ["kernel_size": .int(kernel)], input: [1, kernel, kernel])
        let x = try Tensor<Double>(shape: [1, 1, kernel, kernel], values: [Double](repeating: 0, count: kernel * kernel - 2) + [7, 7])
        #expect(try layer.forward(x, training: true).array == [7])
        let dx = try layer.backward(try Tensor(shape: [1, 1, 1, 1], values: [10]), needInputGradient: true)!
        #expect(dx.array == [Double](repeating: 0, count: kernel * kernel - 2) + [10, 0])
    }
}

@Suite struct BatchNormTests {
    /// y = weight (x - mean) / sqrt(var + eps) + bias per channel; training with the batch's
    /// biased statistics and updating the running ones (unbiased variance), evaluation with
    /// the running ones.
    @Test(arguments: [[5], [3, 4, 5]])
    func forwardMatchesTheFormula(shape: [Int]) throws {
        var rng = RandomGenerator(seed: 8)
        let momentum = 0.2, eps = 1e-3
        let (layer, _) = try build("batch_norm", ["momentum": .double(momentum), "eps": .double(eps)], input: shape)
        let bn = try #require(layer as? BatchNorm<Double>)
        #expect(bn.runningMean.value.array.allSatisfy { $0 == 0 } && bn.runningVar.value.array.allSatisfy { $0 == 1 })
        #expect(bn.weight!.value.array.allSatisfy { $0 == 1 } && bn.bias!.value.array.allSatisfy { $0 == 0 })
        randomize(layer, &rng)
        let batch = 4, channels = shape[0], spatial = shape.dropFirst().reduce(1, *)
        let x = try randomTensor([batch] + shape, &rng, scale: 3)
        for i in 0..<x.count { x.data[i] += 2 }
        let values = x.array
        func channel(_ c: Int) -> [Double] {
            (0..<batch).flatMap { b in (0..<spatial).map { values[(b * channels + c) * spatial + $0] } }
        }
        let n = Double(batch * spatial)
        let means = (0..<channels).map { channel($0).reduce(0, +) / n }
        let variances = (0..<channels).map { c in channel(c).map { ($0 - means[c]) * ($0 - means[c]) }.reduce(0, +) / n }
        let gamma = bn.weight!.value.array, beta = bn.bias!.value.array
        func expected(_ mean: [Double], _ variance: [Double]) -> [Double] {
            values.indices.map { i in
                let c = (i / spatial) % channels
                return gamma[c] * (values[i] - mean[c]) / (variance[c] + eps).squareRoot() + beta[c]
            }
        }
        let y = try layer.forward(x, training: true).array
        #expect(maxAbsDiff(y, expected(means, variances)) < 1e-12)
        #expect(bn.runningMean.value.array.allSatisfy { $0 == 0 }, "the statistics wait for the step to be accepted")
        layer.commitTrainingStatistics()
        let runningMean = means.map { momentum * $0 }
        let runningVar = variances.map { (1 - momentum) + momentum * $0 * n / (n - 1) }
        #expect(maxAbsDiff(bn.runningMean.value.array, runningMean) < 1e-14)
        #expect(maxAbsDiff(bn.runningVar.value.array, runningVar) < 1e-14)
        let running = layer.buffers.map { $0.value.array }
        let evaluated = try layer.forward(x, training: false).array
        #expect(maxAbsDiff(evaluated, expected(runningMean, runningVar)) < 1e-12)
        #expect(layer.buffers.map { $0.value.array } == running, "evaluation leaves the running statistics alone")
        #expect(layer.buffers.map(\.name) == ["running_mean", "running_var"])
    }

    /// The plane sums in C (batch norm's statistics and gradient sums for float32 planes, with
    /// and without a ReLU's mask) agree with float64 sums to float32 rounding, and their plain C and AVX2 versions give
    /// the same bits, at lengths around the 32 chains.
    @Test(arguments: [1, 5, 31, 32, 33, 63, 64, 100, 196, 784, 1001])
    func planeSumsMatchFloat64(n: Int) {
        var rng = RandomGenerator(seed: UInt64(n))
        let x = (0..<n).map { _ in Float(rng.normal() * 2 + 1) }, y = (0..<n).map { _ in Float(rng.normal()) }
        let mask = (0..<n).map { _ in Float(rng.normal()) }, g = zip(mask, y).map { $0 > 0 ? Double($1) : 0 }
        let m = Float(0.75)
        let dx = x.map { Double($0) - Double(m) }
        let expected: [(Double, Double)] = [
            (x.reduce(0) { $0 + Double($1) }, x.reduce(0) { $0 + abs(Double($1)) }),
            (dx.reduce(0) { $0 + $1 * $1 }, dx.reduce(0) { $0 + $1 * $1 }),
            (y.reduce(0) { $0 + Double($1) }, y.reduce(0) { $0 + abs(Double($1)) }),
            (zip(y, dx).reduce(0) { $0 + Double($1.0) * $1.1 }, zip(y, dx).reduce(0) { $0 + abs(Double($1.0) * $1.1) }),
            (dx.reduce(0, +), dx.reduce(0) { $0 + abs($1) }),
            (g.reduce(0, +), g.reduce(0) { $0 + abs($1) }),
            (zip(g, dx).reduce(0) { $0 + $1.0 * $1.1 }, zip(g, dx).reduce(0) { $0 + abs($1.0 * $1.1) }),
        ]
        var found: [[Float]] = []
        for plain: Int32 in [0, 1] {
            var a: Float = 0, b: Float = 0, c: Float = 0, d: Float = 0, e: Float = 0, f: Float = 0
            dlk_plane_gradient_sums_f32(y, x, nil, m, Int64(n), &a, &b, plain)
            dlk_plane_shifted_sums_f32(x, m, Int64(n), &c, &d, plain)
            dlk_plane_gradient_sums_f32(y, x, mask, m, Int64(n), &e, &f, plain)
            found.append([dlk_plane_sum_f32(x, Int64(n), plain), dlk_plane_squared_deviations_f32(x, m, Int64(n), plain),
                          a, b, c, e, f])
            #expect(d.bitPattern == found.last![1].bitPattern, "n \(n): the shifted squares are the squared deviations' chains")
        }
        #expect(found[0].map(\.bitPattern) == found[1].map(\.bitPattern), "n \(n): plain C and AVX2 differ")
        for (value, (sum, magnitude)) in zip(found[0], expected) {
            #expect(abs(Double(value) - sum) <= 1e-6 * magnitude + 1e-30, "n \(n): \(value) against \(sum)")
        }
    }

    /// Float32 channel statistics: the two passes, and the one pass around a shift near each
    /// mean, match float64 to float32 rounding; a shift far from a channel's mean (here 0,
    /// against a mean of 1000 and a standard deviation of 0.01, where one pass would keep no
    /// correct digit of the variance) sends that channel back to the two passes.
    @Test func channelStatisticsMatchFloat64WithOrWithoutAShift() throws {
        var rng = RandomGenerator(seed: 12)
        let batch = 3, channels = 4, spatial = 196
        let centres: [Double] = [0, 3, -2, 1000], spreads: [Double] = [1, 0.5, 4, 0.01]
        var x = [Float](repeating: 0, count: batch * channels * spatial)
        for b in 0..<batch {
            for c in 0..<channels {
                for s in 0..<spatial { x[(b * channels + c) * spatial + s] = Float(centres[c] + spreads[c] * rng.normal()) }
            }
        }
        func channel(_ c: Int) -> [Double] {
            (0..<batch).flatMap { b in (0..<spatial).map { Double(x[(b * channels + c) * spatial + $0]) } }
        }
        let means = (0..<channels).map { channel($0).reduce(0, +) / Double(batch * spatial) }
        let variances = (0..<channels).map { c in channel(c).map { ($0 - means[c]) * ($0 - means[c]) }.reduce(0, +) / Double(batch * spatial) }
        let nearby = zip(means, spreads).map { Float($0 + 0.3 * $1) }
        for shift in [nil, nearby, [Float](repeating: 0, count: channels)] {
            var mean = [Float](repeating: 0, count: channels), variance = mean
            x.withUnsafeBufferPointer { xp in
                shift.withOptionalPointer { k in
                    Kernels.channelMeanVariance(xp.baseAddress!, mean: &mean, variance: &variance, batch: batch, channels: channels,
                                                spatial: spatial, shift: k)
                }
            }
            for c in 0..<channels {
                #expect(abs(Double(mean[c]) - means[c]) <= 2e-7 * (abs(means[c]) + spreads[c]), "channel \(c), shift \(String(describing: shift))")
                #expect(abs(Double(variance[c]) - variances[c]) <= 1e-5 * variances[c], "channel \(c), shift \(String(describing: shift))")
            }
        }
    }

    @Test func trainingNeedsMoreThanOneValuePerChannel() throws {
        let (layer, _) = try build("batch_norm", input: [3])
        do {
            _ = try layer.forward(try Tensor(shape: [1, 3], values: [1, 2, 3]), training: true)
            Issue.record("a batch of one trained")
        } catch {
            #expect(error.kind == .invalidArgument)
            #expect(error.message.contains("more than one value per channel"))
        }
        _ = try layer.forward(try Tensor(shape: [1, 3], values: [1, 2, 3]), training: false)
    }

    @Test func withoutAffineThereAreNoParameters() throws {
        let (layer, _) = try build("batch_norm", ["affine": .bool(false)], input: [2, 3, 3])
        #expect(layer.parameters.isEmpty)
        #expect(layer.buffers.count == 2)
    }
}

@Suite struct DropoutTests {
    @Test func evaluationIsTheIdentity() throws {
        var rng = RandomGenerator(seed: 1)
        let (layer, random) = try build("dropout", ["rate": .double(0.5)], input: [10])
        let x = try randomTensor([3, 10], &rng)
        let before = random.generator.state
        #expect(try layer.forward(x, training: false).array == x.array)
        #expect(try layer.backward(x, needInputGradient: true)!.array == x.array)
        #expect(random.generator.state == before, "evaluation draws nothing")
    }

    /// The mask is the definition, uniform() < rate per entry in order (its kernel compares
    /// integers instead), and leaves the generator where the definition does.
    @Test(arguments: [0.1, 0.25, 1.0 / 3, 0.5, 0.7, 1 - 0x1.0p-40, 0x1.0p-53, 0.0])
    func maskIsUniformBelowRate(rate: Double) throws {
        var fast = RandomGenerator(seed: 9), reference = fast
        let n = 20_000
        let mask = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { mask.deallocate() }
        Kernels.dropoutMask(mask, n, rate: rate, rng: &fast)
        let keep = 1 / Float(1 - rate)
        let expected = (0..<n).map { _ in reference.uniform() < rate ? 0 : keep }
        #expect(Array(UnsafeBufferPointer(start: mask, count: n)) == expected)
        #expect(fast.state == reference.state)
    }

    @Test(arguments: [0.1, 0.25, 0.7])
    func trainingZeroesAboutRateAndScalesTheRest(rate: Double) throws {
        let n = 100_000
        let (layer, _) = try build("dropout", ["rate": .double(rate)], input: [n])
        let x = try Tensor<Double>(shape: [1, n], values: (0..<n).map { 1 + Double($0 % 7) })
        let y = try layer.forward(x, training: true).array
        let zeros = y.filter { $0 == 0 }.count
        // Binomial standard deviation is at most sqrt(n / 4) = 158 entries.
        #expect(abs(Double(zeros) / Double(n) - rate) < 0.01)
        let values = x.array
        let kept = (0..<n).filter { y[$0] != 0 }
        #expect(maxAbsDiff(kept.map { y[$0] }, kept.map { values[$0] / (1 - rate) }) < 1e-12)
        // The gradient goes through the same mask.
        let dx = try layer.backward(x, needInputGradient: true)!.array
        #expect(dx == y)
    }

    @Test func theSeedFixesTheMask() throws {
        func mask(seed: UInt64, frozenRepeat: Bool = false) throws -> [Double] {
            let (layer, random) = try build("dropout", ["rate": .double(0.5)], input: [64], seed: seed)
            let x = try Tensor<Double>(shape: [4, 64], values: Array(repeating: 1, count: 256))
            let first = try layer.forward(x, training: true).array
            guard frozenRepeat else { return first }
            random.frozen = true
            let again = try layer.forward(x, training: true).array
            #expect(again == first, "a frozen source replays the mask")
            random.frozen = false
            #expect(try layer.forward(x, training: true).array != first, "an unfrozen source draws a new one")
            return first
        }
        #expect(try mask(seed: 3) == mask(seed: 3))
        #expect(try mask(seed: 3) != mask(seed: 4))
        #expect(try mask(seed: 3, frozenRepeat: true) == mask(seed: 3))
    }

    @Test func rateZeroIsTheIdentityWhileTraining() throws {
        let (layer, random) = try build("dropout", ["rate": .double(0)], input: [5])
        let x = try Tensor<Double>(shape: [1, 5], values: [1, 2, 3, 4, 5])
        let before = random.generator.state
        #expect(try layer.forward(x, training: true).array == [1, 2, 3, 4, 5])
        #expect(random.generator.state == before)
    }
}

@Suite struct ReshapeTests {
    @Test func flattenAndReshapeKeepTheValues() throws {
        var rng = RandomGenerator(seed: 2)
        let x = try randomTensor([2, 784], &rng)
        let (reshape, _) = try build("reshape", ["shape": .ints([1, 28, 28])], input: [784])
        let y = try reshape.forward(x, training: true)
        #expect(y.shape == [2, 1, 28, 28])
        #expect(y.array == x.array)
        let (flatten, _) = try build("flatten", input: [1, 28, 28])
        #expect(flatten.outputShape == [784])
        let z = try flatten.forward(y, training: true)
        #expect(z.shape == [2, 784] && z.array == x.array)
        let dx = try reshape.backward(z, needInputGradient: true)!
        #expect(dx.shape == [2, 784] && dx.array == x.array)
        let (single, _) = try build("reshape", ["shape": .int(784)], input: [4, 14, 14])
        #expect(single.outputShape == [784])
    }
}

// MARK: - Gradient checks in float64

@Suite struct CNNGradientTests {
    @Test(arguments: 0..<convCases.count)
    func conv2d(which: Int) throws {
        let (batch, channels, height, width, filters, kernel, stride, padding) = convCases[which]
        var rng = RandomGenerator(seed: 100 + UInt64(which))
        // Whole batch; one sample per product; the input gradient one sample a piece; two
        // samples a piece (the last piece of an odd batch holds one); the weight gradient in
        // slices of one sample, over the whole batch and added across groups of two.
        for mode in ["whole", "grouped", "pieces of 1", "pieces of 2", "slices", "grouped slices"] {
            let (layer, _) = try build("conv2d", ["filters": .int(filters), "kernel_size": pair(kernel), "stride": pair(stride),
                                                  "padding": pair(padding)], input: [channels, height, width])
            let conv = layer as! Conv2D<Double>
            let columns = channels * kernel.0 * kernel.1 * conv.window.outputPlane
            switch mode {
            case "grouped": conv.columnLimit = 1
            case "pieces of 1": conv.pieceElements = 1
            case "pieces of 2": conv.pieceElements = 2 * columns
            case "slices": conv.sliceWork = 1
            case "grouped slices": (conv.sliceWork, conv.columnLimit) = (1, 2 * columns)
            default: break
            }
            randomize(layer, &rng)
            let result = try checkLayer(layer, input: try randomTensor([batch + 1, channels, height, width], &rng))
            #expect(result.input < 1e-7, "case \(which) \(mode): \(result.input)")
            #expect(result.parameters.count == 2)
            for (name, error) in result.parameters { #expect(error < 1e-7, "case \(which) \(mode) \(name): \(error)") }
        }
    }

    @Test(arguments: ["max_pool2d", "avg_pool2d"])
    func pooling(type: String) throws {
        var rng = RandomGenerator(seed: 12)
        for (kernel, step, padding) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
            let (layer, _) = try build(type, ["kernel_size": .int(kernel), "stride": .int(step), "padding": .int(padding)],
                                       input: [2, 6, 7])
            // Distinct values 0.1 apart, so no perturbation changes which element is a maximum.
            var values = (0..<3 * 2 * 6 * 7).map { Double($0) * 0.1 - 4 }
            for i in stride(from: values.count - 1, to: 0, by: -1) { values.swapAt(i, rng.below(i + 1)) }
            let result = try checkLayer(layer, input: try Tensor(shape: [3, 2, 6, 7], values: values))
            #expect(result.input < 1e-7, "\(type) k\(kernel) s\(step) p\(padding): \(result.input)")
        }
    }

    @Test(arguments: [[6], [3, 4, 5]])
    func batchNorm(shape: [Int]) throws {
        var rng = RandomGenerator(seed: 21)
        for training in [true, false] {
            for affine in [true, false] {
                let (layer, _) = try build("batch_norm", ["affine": .bool(affine), "momentum": .double(0.3)], input: shape)
                randomize(layer, &rng)
                // Running statistics away from their initial values, for the evaluation case.
                _ = try layer.forward(try randomTensor([5] + shape, &rng, scale: 2), training: true)
                let result = try checkLayer(layer, input: try randomTensor([4] + shape, &rng, scale: 2), training: training)
                #expect(result.input < 1e-7, "\(shape) training \(training) affine \(affine): \(result.input)")
                #expect(result.parameters.count == (affine ? 2 : 0))
                for (name, error) in result.parameters { #expect(error < 1e-7, "\(shape) training \(training) \(name): \(error)") }
            }
        }
    }

    @Test func dropoutWithAFrozenMask() throws {
        var rng = RandomGenerator(seed: 5)
        let (layer, random) = try build("dropout", ["rate": .double(0.4)], input: [3, 4, 4])
        let x = try randomTensor([2, 3, 4, 4], &rng)
        let y = try layer.forward(x, training: true).array
        #expect(y.contains(0))
        random.frozen = true
        let result = try checkLayer(layer, input: x)
        #expect(result.input < 1e-7)
        #expect(try layer.forward(x, training: true).array == y, "the mask never changed")
    }

    @Test func flattenAndReshape() throws {
        var rng = RandomGenerator(seed: 6)
        let (flatten, _) = try build("flatten", input: [2, 3, 4])
        #expect(try checkLayer(flatten, input: try randomTensor([3, 2, 3, 4], &rng)).input < 1e-7)
        let (reshape, _) = try build("reshape", ["shape": .ints([2, 3, 4])], input: [24])
        #expect(try checkLayer(reshape, input: try randomTensor([3, 24], &rng)).input < 1e-7)
    }
}

// MARK: - Whole models

/// A small CNN: reshape - conv - batch norm - relu - max pool - dropout - flatten - linear.
/// The convolution has no bias: batch norm would cancel it, leaving a gradient of rounding
/// noise that a relative error cannot judge.
private func smallCNN(dtype: DType = .float64, seed: UInt64 = 3, optimizer: String = #"{"type": "sgd", "lr": 0.05, "momentum": 0.9}"#) throws -> ModelSpec {
    try SpecParser.parse(json: """
    {"input": {"size": 50}, "layers": [
        {"type": "reshape", "shape": [2, 5, 5]},
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1, "bias": false},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "dropout", "rate": 0.3},
        {"type": "flatten"},
        {"type": "linear", "units": 4}],
     "loss": "cross_entropy", "optimizer": \(optimizer), "seed": \(seed), "dtype": "\(dtype.rawValue)"}
    """)
}

/// reshape - conv - batch norm - relu - max pool 2x2 - flatten - linear on images of 2 x side x
/// side: the pattern `Model.fuseLayers` runs as one pass.
private func convBatchNormPoolSpec(side: Int, dtype: String, optimizer: String) -> String {
    """
    {"input": {"size": \(2 * side * side)}, "layers": [
        {"type": "reshape", "shape": [2, \(side), \(side)]},
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1, "bias": false},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "units": 4}],
     "loss": "cross_entropy", "optimizer": \(optimizer), "seed": 3, "dtype": "\(dtype)"}
    """
}

private func batch(_ n: Int, features: Int, classes: Int, seed: UInt64) -> ([Double], [Int32]) {
    var rng = RandomGenerator(seed: seed)
    return ((0..<n * features).map { _ in rng.normal() }, (0..<n).map { _ in Int32(rng.below(classes)) })
}

@discardableResult
private func trainSteps(_ model: any AnyModel, _ range: Range<Int>, features: Int = 50, classes: Int = 4) throws -> Double {
    var loss = 0.0
    for i in range {
        let (x, y) = batch(6, features: features, classes: classes, seed: UInt64(1000 + i))
        loss = try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { try model.trainStep(x: xp.baseAddress!, batch: 6, targets: .labels($0.baseAddress!)) }
        }
    }
    return loss
}

@Suite struct CNNModelTests {
    @Test func wholeModelGradientCheckIsExcellent() throws {
        let model = try Model<Double>(spec: try smallCNN())
        #expect(model.parameters.map(\.name) == ["layers.1.weight", "layers.2.weight", "layers.2.bias",
                                                 "layers.7.weight", "layers.7.bias"])
        #expect(model.buffers.map(\.name) == ["layers.2.running_mean", "layers.2.running_var"])
        try trainSteps(model, 0..<3)         // running statistics and weights away from their start
        let runningBefore = model.buffers.map { $0.value.array }
        let rngBefore = model.rng.state
        let (x, y) = batch(5, features: 50, classes: 4, seed: 77)
        let entries = try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { try model.checkGradients(x: xp.baseAddress!, batch: 5, targets: .labels($0.baseAddress!)) }
        }
        #expect(entries.count == 5)
        for e in entries { #expect(e.relativeError < 1e-7, "\(e.name): \(e.relativeError)") }
        #expect(model.buffers.map { $0.value.array } == runningBefore, "the check leaves the running statistics alone")
        #expect(model.rng.state == rngBefore, "and the generator")
        #expect(!model.random.frozen)
    }

    /// Every kernel of a CNN step splits its work over the kernel threads by samples, planes,
    /// channels or tap rows, each computed as on one thread: a batch large enough to be
    /// split trains to the same bits on any number of threads.
    @Test func trainingIsTheSameWithAnyNumberOfThreads() throws {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let spec = try SpecParser.parse(json: """
        {"input": {"size": 784}, "layers": [
            {"type": "reshape", "shape": [1, 28, 28]},
            {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "batch_norm"}, {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2},
            {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": 1},
            {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1},
            {"type": "flatten"}, {"type": "linear", "units": 10}],
         "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 5}
        """)
        let rows = 48
        let (x, y) = batch(rows, features: 784, classes: 10, seed: 9)
        let xf = x.map(Float.init)
        func train(threads: Int) throws -> [[Float]] {
            Kernels.threads = threads
            let model = try Model<Float>(spec: spec)
            for _ in 0..<3 {
                _ = try xf.withUnsafeBufferPointer { xp in
                    try y.withUnsafeBufferPointer { try model.trainStep(x: xp.baseAddress!, batch: rows, targets: .labels($0.baseAddress!)) }
                }
            }
            var out = [Float](repeating: 0, count: rows * 10)
            try xf.withUnsafeBufferPointer { (xp) throws(DLError) in try model.predict(x: xp.baseAddress!, count: rows, into: &out) }
            return model.parameters.map { $0.value.array } + model.buffers.map { $0.value.array } + [out]
        }
        let one = try train(threads: 1)
        for threads in [2, 3, 8] {
            #expect(try train(threads: threads) == one, "\(threads) threads")
        }
    }

    /// Batch norm followed by ReLU runs as one layer (`Model.fuseLayers`); the same model with
    /// the two run apart trains, with batch statistics and in evaluation, to the same bits.
    /// Planes of 5 x 5 take the Swift sums, of 9 x 9 the C kernel's (at least `minCPlane`).
    @Test(arguments: [5, 9]) func batchNormWithReLUFusedGivesTheSameBits(side: Int) throws {
        #expect((side * side >= Kernels.minCPlane) == (side == 9))
        let features = 2 * side * side
        let spec = try SpecParser.parse(json: convBatchNormPoolSpec(side: side, dtype: "float32",
                                                                     optimizer: #"{"type": "sgd", "lr": 0.05, "momentum": 0.9}"#))
        func run(fused: Bool) throws -> [[Float]] {
            let model = try Model<Float>(spec: spec)
            let norm = try #require(model.layers[2] as? BatchNorm<Float>)
            let relu = try #require(model.layers[3] as? Activation<ReLU, Float>)
            #expect(norm.fusedReLU && relu.absorbed, "the model fuses the pair")
            model.unfusePooling()   // the pooling's fusion sums in another order (tested below)
            if !fused { (norm.fusedReLU, relu.absorbed) = (false, false) }
            try trainSteps(model, 0..<4, features: features)
            let (x, _) = batch(7, features: features, classes: 4, seed: 5)
            let xf = x.map(Float.init)
            var out = [Float](repeating: 0, count: 7 * 4)
            try xf.withUnsafeBufferPointer { (xp) throws(DLError) in try model.predict(x: xp.baseAddress!, count: 7, into: &out) }
            return model.parameters.map { $0.value.array } + model.parameters.map { $0.grad.array }
                + model.buffers.map { $0.value.array } + [out]
        }
        let (fused, apart) = (try run(fused: true), try run(fused: false))
        #expect(fused.map { $0.map(\.bitPattern) } == apart.map { $0.map(\.bitPattern) })
        let outputs = fused[fused.count - 1]
        #expect(outputs.allSatisfy { $0.isFinite })
    }

    /// Batch norm, ReLU and 2x2 max pooling run as one pass (`BatchNorm.fusedPool`): against
    /// the three layers apart on the same weights, the training forward pass and the
    /// predictions give the same bits, and every gradient of a step agrees to rounding (the
    /// sums add the windows' maxima only, in another order). Planes of 8 x 8, and of 7 x 7
    /// and 5 x 5, whose last row and column no window covers (their input gradient is batch
    /// norm's alone); the float64 gradient check of the fused model is
    /// `wholeModelGradientCheckIsExcellent` (5 x 5).
    @Test(arguments: [8, 7, 5]) func batchNormReLUAndPoolingFusedAgreeWithTheLayersApart(side: Int) throws {
        let features = 2 * side * side
        func spec(_ dtype: String) -> String {
            convBatchNormPoolSpec(side: side, dtype: dtype, optimizer: #"{"type": "sgd", "lr": 0.05}"#)
        }
        func compare<T: DLScalar>(_: T.Type, tolerance: Double) throws {
            let parsed = try SpecParser.parse(json: spec(T.self == Float.self ? "float32" : "float64"))
            let (fused, apart) = (try Model<T>(spec: parsed), try Model<T>(spec: parsed))
            let norm = try #require(fused.layers[2] as? BatchNorm<T>), pool = try #require(fused.layers[4] as? Pool2D<T>)
            #expect(norm.fusedPool == pool.window && pool.absorbed, "the model fuses batch norm, ReLU and pooling")
            apart.unfusePooling()
            try trainSteps(fused, 0..<2, features: features)   // away from the initial statistics
            try trainSteps(apart, 0..<2, features: features)
            for (a, b) in zip(apart.parameters + apart.buffers, fused.parameters + fused.buffers) { b.value.copy(from: a.value) }
            let (x, y) = batch(6, features: features, classes: 4, seed: 11)
            let input = try Tensor<T>(shape: [6, features])
            for (i, v) in x.enumerated() { input.data[i] = T(v) }
            let outFused = try fused.forward(input, training: true).array, outApart = try apart.forward(input, training: true).array
            #expect(outFused.map { Double($0) }.map(\.bitPattern) == outApart.map { Double($0) }.map(\.bitPattern),
                    "the training forward pass")
            var gradients: [[[Double]]] = []
            for model in [fused, apart] {
                let xs = x.map { T($0) }
                _ = try xs.withUnsafeBufferPointer { xp in
                    try y.withUnsafeBufferPointer { try model.lossAndGradients(x: xp.baseAddress!, batch: 6, targets: .labels($0.baseAddress!)) }
                }
                gradients.append(model.parameters.map { $0.grad.array.map { Double($0) } })
                var out = [T](repeating: 0, count: 6 * 4)
                try xs.withUnsafeBufferPointer { (xp) throws(DLError) in try model.predict(x: xp.baseAddress!, count: 6, into: &out) }
                gradients.append([out.map { Double($0) }])
            }
            #expect(gradients[1] == gradients[3], "predictions: the same bits")
            for (name, (g, h)) in zip(fused.parameters.map(\.name), zip(gradients[0], gradients[2])) {
                let scale = h.map(abs).max() ?? 0
                #expect(scale > 0, "\(name): a gradient to compare")
                let worst = zip(g, h).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= tolerance * scale, "\(name): fused and apart differ by \(worst) (largest \(scale))")
            }
        }
        try compare(Float.self, tolerance: 1e-5)
        try compare(Double.self, tolerance: 1e-12)
    }

    /// The fused pass's C kernel (float32; AVX2 and plain C) against batch norm's affine
    /// pass with ReLU and then max pooling, each as its layer computes it: the same bits and
    /// the same maxima, with ties (zeros from the ReLU, repeated values) and planes whose
    /// width leaves windows for the masked tail of the vector loop.
    @Test func fusedPoolingKernelGivesTheLayersBits() throws {
        var rng = RandomGenerator(seed: 17)
        for (height, width) in [(28, 28), (14, 14), (7, 7), (5, 9), (2, 34), (6, 16), (4, 3)] {
            let n = height * width
            // Values with repeats, so that windows tie before and after the ReLU.
            let x = (0..<n).map { _ in Float(rng.below(7)) * 0.5 - 1.5 }
            for (k, d): (Float, Float) in [(1.3, 0.25), (-0.7, 0.1), (0.5, -2)] {
                let w = Window2D(height: height, width: width, kernel: (2, 2), stride: (2, 2))
                var z = [Float](repeating: 0, count: n), want = [Float](repeating: 0, count: w.outputPlane)
                var wantAt = [Int32](repeating: 0, count: w.outputPlane)
                Kernels.channelAffine(x, &z, scale: [k], shift: [d], batch: 1, channels: 1, spatial: n, relu: true)
                Kernels.maxPool2d(z, &want, argmax: &wantAt, planes: 1, w)
                for plain in [0, 1] as [Int32] {
                    var got = [Float](repeating: .nan, count: w.outputPlane), at = [Int32](repeating: -1, count: w.outputPlane)
                    dlk_affine_relu_max_pool_2x2_f32(x, &got, &at, k, d, Int64(height), Int64(width), plain)
                    #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "\(height) x \(width), k \(k), plain C \(plain)")
                    #expect(at == wantAt, "\(height) x \(width), k \(k), plain C \(plain): the maxima's positions")
                    var alone = [Float](repeating: .nan, count: w.outputPlane)
                    dlk_affine_relu_max_pool_2x2_f32(x, &alone, nil, k, d, Int64(height), Int64(width), plain)
                    #expect(alone.map(\.bitPattern) == want.map(\.bitPattern), "without positions (evaluation)")
                }
                try checkBackward(x, pooled: want, argmax: wantAt, w, k: k)
            }
        }
    }

    /// The fused backward pass's C kernels (plain C and AVX2: the same bits) against the
    /// pooling layer's backward pass, which scatters each window's gradient to its maximum,
    /// followed by the ReLU's mask and batch norm's formula written out here: the sums to
    /// float32 rounding of their float64 values, the input gradient to the bit.
    func checkBackward(_ x: [Float], pooled: [Float], argmax: [Int32], _ w: Window2D, k: Float) throws {
        var rng = RandomGenerator(seed: UInt64(w.inputPlane))
        let dy = (0..<w.outputPlane).map { _ in Float(rng.normal()) }
        var scattered = [Float](repeating: 0, count: w.inputPlane)
        Kernels.maxPool2dBackward(dy, argmax: argmax, &scattered, planes: 1, w)
        // The ReLU's mask: the forward's output at each element, known here at the maxima only
        // (elsewhere the scattered gradient is 0 either way).
        var dz = scattered
        for (o, a) in argmax.enumerated() where !(pooled[o] > 0) { dz[Int(a)] = 0 }
        let m: Float = 0.3, s: Float = 1.7
        let wantDy = dz.reduce(0.0) { $0 + Double($1) }
        let wantDyXc = zip(dz, x).reduce(0.0) { $0 + Double($1.0) * (Double($1.1) - Double(m)) }
        let (meanDy, meanDyXhat): (Float, Float) = (0.05, -0.11)
        let wantDx = zip(dz, x).map { (g, v) in k * ((g - meanDy) - ((v - m) * s) * meanDyXhat) }
        let wantFixed = dz.map { $0 * k }
        var results: [[UInt32]] = []
        for plain in [0, 1] as [Int32] {
            var (a, b): (Float, Float) = (0, 0)
            dlk_pooled_gradient_sums_f32(dy, pooled, argmax, x, m, Int64(w.outputPlane), &a, &b, plain)
            let bound = 1e-5 * (dz.reduce(0.0) { $0 + Double(abs($1)) } * (1 + Double(x.map(abs).max() ?? 0)))
            #expect(abs(Double(a) - wantDy) <= bound && abs(Double(b) - wantDyXc) <= bound,
                    "\(w.height) x \(w.width), plain C \(plain): sums \(a), \(b) against \(wantDy), \(wantDyXc)")
            var dx = [Float](repeating: .nan, count: w.inputPlane), fixed = dx
            dlk_pooled_input_gradient_f32(x, dy, pooled, argmax, &dx, Int64(w.height), Int64(w.width), k, m, s,
                                          meanDy, meanDyXhat, 1, plain)
            dlk_pooled_input_gradient_f32(x, dy, pooled, argmax, &fixed, Int64(w.height), Int64(w.width), k, m, s,
                                          meanDy, meanDyXhat, 0, plain)
            #expect(dx.map(\.bitPattern) == wantDx.map(\.bitPattern), "\(w.height) x \(w.width), plain C \(plain): dx")
            #expect(fixed.map(\.bitPattern) == wantFixed.map(\.bitPattern), "\(w.height) x \(w.width), plain C \(plain): dx, fixed statistics")
            results.append([a.bitPattern, b.bitPattern])
        }
        #expect(results[0] == results[1], "plain C and AVX2: the same sums")
    }

    /// Only batch norm, ReLU and 2x2 max pooling (stride 2, no padding) fuse: other pooling
    /// after the pair leaves the pooling layer on its own.
    @Test func onlyPairwiseMaxPoolingFuses() throws {
        for (pool, fuses) in [(#"{"type": "max_pool2d", "kernel_size": 2}"#, true),
                              (#"{"type": "avg_pool2d", "kernel_size": 2}"#, false),
                              (#"{"type": "max_pool2d", "kernel_size": 3, "stride": 2}"#, false),
                              (#"{"type": "max_pool2d", "kernel_size": 2, "padding": 1}"#, false)] {
            let model = try Model<Float>(spec: try SpecParser.parse(json: """
                {"input": {"shape": [2, 6, 6]}, "layers": [{"type": "batch_norm"}, {"type": "relu"}, \(pool),
                 {"type": "flatten"}, {"type": "linear", "units": 3}], "loss": "cross_entropy",
                 "optimizer": {"type": "sgd", "lr": 0.1}}
                """))
            let norm = try #require(model.layers[0] as? BatchNorm<Float>)
            #expect((norm.fusedPool != nil) == fuses, "\(pool)")
            #expect(((model.layers[2] as? Pool2D<Float>)?.absorbed ?? false) == fuses, "\(pool)")
        }
        let unrelu = try Model<Float>(spec: try SpecParser.parse(json: """
            {"input": {"shape": [2, 6, 6]}, "layers": [{"type": "batch_norm"}, {"type": "max_pool2d", "kernel_size": 2},
             {"type": "flatten"}, {"type": "linear", "units": 3}], "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}}
            """))
        #expect((unrelu.layers[0] as? BatchNorm<Float>)?.fusedPool == nil, "no ReLU between: nothing fuses")
    }

    @Test func trainingIsDeterministicPerSeed() throws {
        let a = try Model<Float>(spec: try smallCNN(dtype: .float32))
        let b = try Model<Float>(spec: try smallCNN(dtype: .float32))
        let c = try Model<Float>(spec: try smallCNN(dtype: .float32, seed: 4))
        for model in [a, b, c] { try trainSteps(model, 0..<10) }
        #expect(bits(a) == bits(b))
        #expect(a.buffers.map { $0.value.array } == b.buffers.map { $0.value.array })
        #expect(bits(a) != bits(c))
    }

    /// Dropout's masks come from the model's generator, one draw per entry: a training step
    /// advances it by the mask's size, and the same weights with another generator state
    /// train differently.
    @Test func dropoutDrawsFromTheModelsGenerator() throws {
        let a = try Model<Float>(spec: try smallCNN(dtype: .float32))
        let b = try Model<Float>(spec: try smallCNN(dtype: .float32))
        b.rng = RandomGenerator(seed: 99)
        var expected = a.rng
        for _ in 0..<6 * 12 { _ = expected.next() }      // batch 6, dropout over [3, 2, 2]
        try trainSteps(a, 0..<1)
        try trainSteps(b, 0..<1)
        #expect(a.rng.state == expected.state)
        #expect(bits(a) != bits(b))
        var predicted = [Float](repeating: 0, count: 24)
        let before = a.rng.state
        let (x, _) = batch(6, features: 50, classes: 4, seed: 1)
        try x.map { Float($0) }.withUnsafeBufferPointer { xp in
            try predicted.withUnsafeMutableBufferPointer { try a.predict(x: xp.baseAddress!, count: 6, into: $0.baseAddress!) }
        }
        #expect(a.rng.state == before, "evaluation draws no masks")
    }

    /// Running statistics are saved and restored; predictions match and training resumes
    /// bit-identically (dropout masks included, through the saved generator).
    @Test func checkpointRoundTripWithBatchNorm() throws {
        let dir = temporaryDirectory()
        let spec = try smallCNN(dtype: .float32, optimizer: #"{"type": "adam", "lr": 0.01}"#)
        let straight = try makeModel(spec: spec)
        try trainSteps(straight, 0..<16)
        let first = try makeModel(spec: spec)
        try trainSteps(first, 0..<8)
        try first.save(to: dir + "/cnn.h5")
        let resumed = try loadModel(from: dir + "/cnn.h5")
        let original = try #require(first as? Model<Float>), loaded = try #require(resumed as? Model<Float>)
        #expect(loaded.buffers.map(\.name) == original.buffers.map(\.name))
        #expect(loaded.buffers.map { $0.value.array } == original.buffers.map { $0.value.array })
        #expect(original.buffers[1].value.array != [1, 1, 1], "the running variance moved")
        let (x, _) = batch(20, features: 50, classes: 4, seed: 5)
        let xs = x.map { Float($0) }
        var a = [Float](repeating: 0, count: 80), b = a
        try xs.withUnsafeBufferPointer { xp in
            try a.withUnsafeMutableBufferPointer { try first.predict(x: xp.baseAddress!, count: 20, into: $0.baseAddress!) }
            try b.withUnsafeMutableBufferPointer { try resumed.predict(x: xp.baseAddress!, count: 20, into: $0.baseAddress!) }
        }
        #expect(a == b)
        try trainSteps(resumed, 8..<16)
        #expect(try parameters(resumed) == parameters(straight))
        let straightModel = try #require(straight as? Model<Float>)
        #expect(loaded.buffers.map { $0.value.array } == straightModel.buffers.map { $0.value.array })
    }

    @Test func mnistCNNSpecBuilds() throws {
        let spec = try SpecParser.parse(file: cnnSpecsDirectory + "/mnist_cnn.json")
        let model = try Model<Float>(spec: spec)
        #expect(model.layers.map(\.outputShape) == [[1, 28, 28], [32, 28, 28], [32, 28, 28], [32, 28, 28], [32, 14, 14],
                                                    [64, 14, 14], [64, 14, 14], [64, 14, 14], [64, 7, 7], [3136], [3136],
                                                    [128], [128], [10]])
        #expect(model.parameterCount == 288 + 64 + 18_432 + 128 + 401_536 + 1290)
        #expect(model.buffers.count == 4)
    }
}

private let cnnSpecsDirectory: String = {
    let file = String(#filePath)
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/specs"
}()

// MARK: - Spec errors found when building

@Suite struct CNNSpecErrorTests {
    private func buildError(_ input: String, _ layers: String) -> DLError? {
        do {
            let spec = try SpecParser.parse(json: #"{"input": \#(input), "layers": [\#(layers)], "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}}"#)
            _ = try makeModel(spec: spec)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        (#"{"shape": [1, 3, 3]}"#, #"{"type": "conv2d", "filters": 2, "kernel_size": 5}"#,
         "<string>: layers[0] (conv2d): kernel_size [5, 5] does not fit the 3 x 3 input with padding [0, 0]; the padded input must be at least as large as the kernel"),
        (#"{"shape": [1, 3, 3]}"#, #"{"type": "conv2d", "filters": 2, "kernel_size": [3, 4], "padding": [0, 0]}"#,
         "layers[0] (conv2d): kernel_size [3, 4] does not fit the 3 x 3 input with padding [0, 0]"),
        (#"{"size": 784}"#, #"{"type": "conv2d", "filters": 2, "kernel_size": 3}"#,
         #"layers[0] (conv2d) needs images of shape [channels, height, width], but the model's input has shape [784]; give the input as "input": {"shape": [C, H, W]} or put a reshape layer before it"#),
        (#"{"shape": [1, 8, 8]}"#, #"{"type": "flatten"}, {"type": "conv2d", "filters": 2, "kernel_size": 3}"#,
         "layers[1] (conv2d) needs images of shape [channels, height, width], but layers[0] outputs shape [64]"),
        (#"{"size": 784}"#, #"{"type": "linear", "units": 10}, {"type": "max_pool2d", "kernel_size": 2}"#,
         "layers[1] (max_pool2d) needs images of shape [channels, height, width], but layers[0] outputs shape [10]"),
        (#"{"shape": [2, 4, 4]}"#, #"{"type": "max_pool2d", "kernel_size": 2, "padding": 2}"#,
         "layers[0] (max_pool2d): padding [2, 2] is more than half of kernel_size [2, 2]"),
        (#"{"shape": [2, 4, 4]}"#, #"{"type": "avg_pool2d", "kernel_size": 5}"#,
         "layers[0] (avg_pool2d): kernel_size [5, 5] does not fit the 4 x 4 input"),
        (#"{"size": 784}"#, #"{"type": "reshape", "shape": [1, 28, 29]}"#,
         "<string>: layers[0] (reshape): cannot reshape the input of shape [784] (784 values) to [1, 28, 29] (812 values)"),
        (#"{"shape": [1, 28, 28]}"#, #"{"type": "linear", "units": 10}"#,
         "layers[0] (linear) needs flat input, but its input has shape [1, 28, 28]"),
    ])
    func badConfigurationsAreRefused(input: String, layers: String, message: String) {
        let error = buildError(input, layers)
        #expect(error?.kind == .spec)
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "built without error")")
    }

    @Test func optionValuesAreCheckedByTheParser() {
        let cases = [
            (#"{"type": "reshape", "shape": [28, 28]}"#, "layers[0].shape: expected a positive integer or a list of 3 positive integers, got [28,28]"),
            (#"{"type": "conv2d", "filters": 2, "kernel_size": 0}"#, "layers[0].kernel_size: expected a positive integer or a list of 2 positive integers, got 0"),
            (#"{"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": -1}"#, "layers[0].padding: expected a non-negative integer or a list of 2 non-negative integers, got -1"),
            (#"{"type": "dropout", "rate": 1}"#, "layers[0].rate: expected a number in [0, 1), got 1"),
            (#"{"type": "batch_norm", "momentum": 1.5}"#, "layers[0].momentum: expected a number in [0, 1], got 1.5"),
            (#"{"type": "conv2d", "kernel_size": 3}"#, "layers[0].filters: missing required option (a positive integer)"),
        ]
        for (layer, message) in cases {
            let error = buildError(#"{"shape": [1, 8, 8]}"#, layer)
            #expect(error?.kind == .spec)
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "built without error")")
        }
    }
}

private extension Optional where Wrapped == [Float] {
    /// The array's storage, or nil, for the length of `body`.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let self else { return body(nil) }
        return self.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
