import Testing
import CDeepLearningKernels
@testable import DeepLearning

/// The float32 elementwise kernels in C against the formulas they replace, bit for bit,
/// with the AVX2 path and the plain C one, at every length up to a few vectors (so every
/// tail) and with the values that tell formulas apart (NaN, -0, +-infinity, 0).
@Suite struct ElementwiseKernelTests {
    static let special: [Float] = [.nan, -0.0, 0, .infinity, -.infinity, 1e-45, -1e-45, 3e38, -2.5]

    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return (0..<n).map { i in i % 5 == 0 ? special[(i / 5) % special.count] : Float(rng.normal()) }
    }

    @Test func reluMatchesItsFormula() {
        for n in Array(0...40) + [255, 256, 257] {
            let x = Self.values(n, seed: UInt64(n)), dy = Self.values(n, seed: UInt64(1000 + n))
            let want = x.map { $0 > 0 ? $0 : 0 }
            let wantBack = zip(x, dy).map { $0 > 0 ? $1 : 0 }
            for plain: Int32 in [0, 1] {
                var y = [Float](repeating: .nan, count: n), dx = y
                dlk_relu_f32(x, &y, Int64(n), plain)
                dlk_relu_backward_f32(x, dy, &dx, Int64(n), plain)
                #expect(y.map(\.bitPattern) == want.map(\.bitPattern), "forward, \(n), plain C \(plain)")
                #expect(dx.map(\.bitPattern) == wantBack.map(\.bitPattern), "backward, \(n), plain C \(plain)")
            }
        }
    }

    /// The chunked forward's sums: y + the partial product, then + the bias, per element.
    @Test func chunkSumsAddInTheirOrder() {
        #expect(DLK_SPARSE_CHUNKS == 2, "the test writes one partial product")
        for (rows, n) in [(1, 1), (3, 7), (2, 8), (5, 17), (64, 128), (300, 10)] {
            let count = rows * n
            let y0 = Self.values(count, seed: UInt64(count)), partial = Self.values(count, seed: UInt64(count + 7))
            let bias = Self.values(n, seed: UInt64(n + 11))
            for withBias in [false, true] {
                let want = (0..<count).map { i in withBias ? (y0[i] + partial[i]) + bias[i % n] : y0[i] + partial[i] }
                for plain: Int32 in [0, 1] {
                    var y = y0
                    bias.withUnsafeBufferPointer { b in
                        dlk_sum_chunks_f32(&y, partial, withBias ? b.baseAddress : nil, Int64(rows), Int64(n), plain)
                    }
                    #expect(y.map(\.bitPattern) == want.map(\.bitPattern), "\(rows) x \(n), bias \(withBias), plain C \(plain)")
                }
            }
        }
    }

    /// Cross-entropy over labels computes a float32 batch's exponentials in one call
    /// (`shiftedExponentials`) and finishes each row (`normalizeExponentials`): each row and
    /// its log-sum-exp are the bits of the row-by-row softmax (`softmaxRow`) it replaced.
    @Test func batchedSoftmaxGivesTheRowByRowBits() {
        for (rows, cols) in [(2, 10), (64, 10), (7, 3), (5, 33), (3, 1)] {
            var rng = RandomGenerator(seed: UInt64(rows * cols))
            let logits = (0..<rows * cols).map { _ in Float(rng.normal() * 4) }
            var batched = [Float](repeating: 0, count: rows * cols), single = batched
            var logZBatched = [Double](), logZSingle = [Double]()
            logits.withUnsafeBufferPointer { l in
                let x = l.baseAddress!
                batched.withUnsafeMutableBufferPointer { b in
                    Kernels.shiftedExponentials(x, b.baseAddress!, rows: rows, cols: cols)
                    for r in 0..<rows {
                        logZBatched.append(Kernels.normalizeExponentials(x + r * cols, b.baseAddress! + r * cols, cols))
                    }
                }
                single.withUnsafeMutableBufferPointer { s in
                    for r in 0..<rows { logZSingle.append(Kernels.softmaxRow(x + r * cols, s.baseAddress! + r * cols, cols)) }
                }
            }
            #expect(batched.map(\.bitPattern) == single.map(\.bitPattern), "\(rows) x \(cols)")
            #expect(logZBatched.map(\.bitPattern) == logZSingle.map(\.bitPattern), "\(rows) x \(cols)")
        }
    }
}
