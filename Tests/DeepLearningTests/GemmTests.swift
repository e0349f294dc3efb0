import CDeepLearningKernels
import Testing
@testable import DeepLearning

/// `DLScalar.gemm`, which cuts large products into blocks run on the kernel threads, against
/// the product computed in float64 with naive loops, and against itself on other thread
/// counts (the blocks depend on the shape only, so the bits must not change).
@Suite(.serialized) struct GemmTests {
    struct Case: CustomTestStringConvertible {
        var m: Int, n: Int, k: Int, transA: Bool, transB: Bool
        var alpha: Float = 1, beta: Float = 0
        var testDescription: String { "\(m)x\(n)x\(k) \(transA ? "T" : "N")\(transB ? "T" : "N") alpha \(alpha) beta \(beta)" }
    }

    static let cases: [Case] = [
        Case(m: 64, n: 128, k: 784, transA: false, transB: false),             // the MLP's forward: columns
        Case(m: 784, n: 128, k: 64, transA: true, transB: false),              // its weight gradient: rows
        Case(m: 64, n: 784, k: 128, transA: false, transB: true),              // an input gradient
        Case(m: 1000, n: 128, k: 784, transA: false, transB: true),            // prediction: 8 row blocks
        Case(m: 250, n: 333, k: 100, transA: true, transB: true, alpha: 0.5, beta: 2),  // tails, beta
        Case(m: 37, n: 2050, k: 61, transA: false, transB: false, alpha: -1, beta: 1),
        Case(m: 8, n: 8, k: 8, transA: false, transB: false),                  // one block
    ]

    /// Stored operands with leading dimensions wider than the product needs.
    struct Operands {
        var a: [Float], b: [Float], c: [Float]
        let lda: Int, ldb: Int, ldc: Int

        init(_ t: Case, seed: UInt64) {
            var rng = RandomGenerator(seed: seed)
            let (aRows, aCols) = t.transA ? (t.k, t.m) : (t.m, t.k)
            let (bRows, bCols) = t.transB ? (t.n, t.k) : (t.k, t.n)
            (lda, ldb, ldc) = (aCols + 3, bCols + 5, t.n + 2)
            a = (0..<(aRows * lda)).map { _ in Float(rng.normal()) }
            b = (0..<(bRows * ldb)).map { _ in Float(rng.normal()) }
            c = (0..<(t.m * ldc)).map { _ in Float(rng.normal()) }
        }

        func element(_ t: Case, _ i: Int, _ j: Int, _ p: Int) -> (Double, Double) {
            let x = t.transA ? a[p * lda + i] : a[i * lda + p]
            let y = t.transB ? b[j * ldb + p] : b[p * ldb + j]
            return (Double(x), Double(y))
        }
    }

    func product(_ t: Case, _ o: Operands, threads: Int) -> [Float] {
        Kernels.threads = threads
        var c = o.c
        o.a.withUnsafeBufferPointer { a in
            o.b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    Float.gemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha,
                               a: a.baseAddress!, lda: o.lda, b: b.baseAddress!, ldb: o.ldb,
                               beta: t.beta, c: c.baseAddress!, ldc: o.ldc)
                }
            }
        }
        return c
    }

    @Test(arguments: cases) func matchesTheFormulaOnAnyNumberOfThreads(_ t: Case) {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let o = Operands(t, seed: UInt64(t.m * 7 + t.n * 3 + t.k))
        let one = product(t, o, threads: 1)
        for threads in [2, 3, 8] {
            #expect(product(t, o, threads: threads) == one, "\(threads) threads give other bits")
        }
        var worst = 0.0
        for i in 0..<t.m {
            for j in 0..<t.n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<t.k {
                    let (x, y) = o.element(t, i, j, p)
                    sum += x * y
                    magnitude += abs(x * y)
                }
                let expected = Double(t.alpha) * sum + Double(t.beta) * Double(o.c[i * o.ldc + j])
                let scale = abs(Double(t.alpha)) * magnitude + abs(Double(t.beta) * Double(o.c[i * o.ldc + j]))
                // float32 accumulation: k roundings of relative size 2^-24 at most.
                let bound = Double(t.k + 2) * 0x1p-24 * scale + 1e-30
                worst = max(worst, abs(Double(one[i * o.ldc + j]) - expected) / bound)
            }
            for j in t.n..<o.ldc {   // the padding between rows of C is not written
                #expect(one[i * o.ldc + j] == o.c[i * o.ldc + j])
            }
        }
        #expect(worst <= 1, "error \(worst) times the float32 bound")
    }

    @Test func blocksCoverTheProductByTheShapeAlone() {
        for (m, n, k) in [(64, 128, 784), (784, 128, 64), (1000, 128, 784), (8, 8, 8), (17, 4096, 4096),
                          (4096, 1, 4096), (31, 31, 1 << 20), (100_000, 16, 16)] {
            let blocks = GemmBlocks(m: m, n: n, k: k)
            #expect(blocks.count >= 1 && blocks.count <= 8 && blocks.count & (blocks.count - 1) == 0)
            #expect(blocks.alongRows == (m >= n))
            #expect(blocks.length == (m >= n ? m : n))
            var next = 0
            for i in 0..<blocks.count {
                let r = blocks.range(i)
                #expect(r.lowerBound == next && !r.isEmpty, "\(m)x\(n)x\(k) block \(i)")
                if i + 1 < blocks.count { #expect(r.upperBound % GemmBlocks.unit == 0) }
                next = r.upperBound
            }
            #expect(next == blocks.length, "\(m)x\(n)x\(k) blocks end at \(next)")
            if blocks.count > 1 {
                #expect(m * n * k / blocks.count >= GemmBlocks.minWork, "\(m)x\(n)x\(k): blocks too small")
            }
        }
        #expect(GemmBlocks(m: 64, n: 128, k: 784).count == 2)
        #expect(GemmBlocks(m: 64, n: 10, k: 128).count == 1)
    }

    // MARK: The unpacked kernel (gemm.c)

    /// `dlk_gemm_f32` and its threaded form `Kernels.unpackedGemm` (the dense product of the
    /// batches the library predicts): every output is a sum of chains of fused multiply-adds,
    /// one per block of DLK_GEMM_SUM_DEPTH consecutive p, in order, times alpha. Computed
    /// here with `addingProduct` (one rounding), it must give the same bits from the plain C
    /// loop, from the machine's vector kernel (AVX-512, or AVX2/FMA, which test.sh also runs
    /// with DL_NO_AVX512=1) and on any number of threads, whatever blocks of rows the threads
    /// take; and the sum must agree with float64 within the float32 bound of summing in
    /// blocks, (block + blocks) units of rounding. A stored as it is and transposed (the
    /// weight gradient x^T dy). 30 x 800 x 300 goes through panels of B on the threads (a
    /// part panel of 32 columns, a part depth of 44).
    @Test(arguments: [(300, 128, 784), (7, 10, 128), (49, 130, 129), (6, 64, 128), (5, 17, 300), (100, 1, 3),
                      (48, 65, 1), (97, 16, 257), (784, 128, 64), (64, 40, 784), (130, 9, 50), (30, 800, 300)],
          [false, true])
    func unpackedKernelGivesTheChainsBitsOnAnySplit(_ shape: (Int, Int, Int), transA: Bool) {
        let (m, n, k) = shape
        let t = Case(m: m, n: n, k: k, transA: transA, transB: false, alpha: 0.37)
        let o = Operands(t, seed: UInt64(m * 5 + n * 11 + k))
        let block = Int(DLK_GEMM_SUM_DEPTH)
        /// The definition: C's value (with `accumulate`) plus each block's chain from zero.
        func sum(_ i: Int, _ j: Int, from start: Float?) -> Float {
            var total = start
            for p0 in stride(from: 0, to: k, by: block) {
                var s: Float = 0
                for p in p0..<min(k, p0 + block) {
                    s = s.addingProduct(transA ? o.a[p * o.lda + i] : o.a[i * o.lda + p], o.b[p * o.ldb + j])
                }
                total = total.map { $0 + s } ?? s
            }
            return total ?? 0
        }
        var chain = o.c
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let xy = Double(transA ? o.a[p * o.lda + i] : o.a[i * o.lda + p]) * Double(o.b[p * o.ldb + j])
                    exact += xy
                    magnitude += abs(xy)
                }
                chain[i * o.ldc + j] = t.alpha * sum(i, j, from: nil)
                let units = Double(min(k, block) + (k + block - 1) / block + 2)
                let bound = units * 0x1p-24 * Double(t.alpha) * magnitude + 1e-30
                worst = max(worst, abs(Double(chain[i * o.ldc + j]) - Double(t.alpha) * exact) / bound)
            }
        }
        #expect(worst <= 1, "error \(worst) times the float32 bound")
        func differing(_ x: [Float], _ y: [Float]) -> Int {
            zip(x, y).filter { $0.bitPattern != $1.bitPattern }.count
        }
        func run(_ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
            var c = o.c
            o.a.withUnsafeBufferPointer { a in
                o.b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in body(a.baseAddress!, b.baseAddress!, c.baseAddress!) }
                }
            }
            return c
        }
        for plain: Int32 in [1, 0] {
            let c = run { a, b, c in
                dlk_gemm_f32(transA ? 1 : 0, Int64(m), Int64(n), Int64(k), t.alpha, a, Int64(o.lda), b, Int64(o.ldb), c,
                             Int64(o.ldc), 0, plain)
            }
            #expect(differing(c, chain) == 0, "plain_c \(plain): other bits than the chain (the padding of C included)")
        }
        // With `accumulate`, each sum starts from C's value (o.c: the padding must stay).
        var continued = o.c
        for i in 0..<m {
            for j in 0..<n { continued[i * o.ldc + j] = t.alpha * sum(i, j, from: o.c[i * o.ldc + j]) }
        }
        for plain: Int32 in [1, 0] {
            let c = run { a, b, c in
                dlk_gemm_f32(transA ? 1 : 0, Int64(m), Int64(n), Int64(k), t.alpha, a, Int64(o.lda), b, Int64(o.ldb), c,
                             Int64(o.ldc), 1, plain)
            }
            #expect(differing(c, continued) == 0, "plain_c \(plain), accumulating: other bits than the chains from C")
        }
        let setting = ThreadSetting.take()
        defer { setting.release() }
        for threads in [1, 2, 3, 8] {
            Kernels.threads = threads
            var ran = false
            let c = run { a, b, c in
                ran = Kernels.unpackedGemm(transA: transA, m: m, n: n, k: k, alpha: t.alpha, a: a, lda: o.lda, b: b,
                                           ldb: o.ldb, c: c, ldc: o.ldc)
            }
            #expect(ran == (dlk_gemm_parallel_takes(transA ? 1 : 0, Int64(m), Int64(n), Int64(k)) != 0))
            #expect(differing(c, ran ? chain : o.c) == 0, "\(threads) threads")
        }
    }

    /// `dlk_transpose_f32` moves every element to its transposed place, exactly, at shapes
    /// around its 8 x 8 blocks, with leading dimensions wider than the matrices, in both its
    /// versions, and writes nothing else.
    @Test func transposesEveryElementAndNothingElse() {
        for (rows, cols) in [(1, 1), (8, 8), (7, 9), (9, 7), (16, 24), (64, 196), (33, 17), (3, 40)] {
            let (lds, ldd) = (cols + 3, rows + 5)
            let src = (0..<(rows * lds)).map { Float($0) * 0.5 - 7 }
            for plain: Int32 in [1, 0] {
                var dst = [Float](repeating: -1, count: cols * ldd)
                src.withUnsafeBufferPointer { s in
                    dst.withUnsafeMutableBufferPointer { d in
                        dlk_transpose_f32(Int64(rows), Int64(cols), s.baseAddress!, Int64(lds), d.baseAddress!, Int64(ldd), plain)
                    }
                }
                var expected = [Float](repeating: -1, count: cols * ldd)
                for i in 0..<rows { for j in 0..<cols { expected[j * ldd + i] = src[i * lds + j] } }
                #expect(dst == expected, "\(rows) x \(cols), plain_c \(plain)")
            }
        }
    }

    /// `dlk_copy` (the library's copy, instead of memcpy) copies exactly the bytes asked for,
    /// at every length around its vector widths and every relative alignment of the two
    /// buffers, and writes nothing past the end.
    @Test func copiesExactlyTheBytesAskedFor() {
        let capacity = 2048 + 64
        var src = [UInt8](repeating: 0, count: capacity)
        for i in src.indices { src[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
        let lengths = Array(0...300) + [511, 512, 513, 1023, 1024, 1025, 2000, 2048]
        for length in lengths {
            for (from, to) in [(0, 0), (0, 16), (16, 0), (3, 29), (1, 4), (31, 0)] {
                var dst = [UInt8](repeating: 0xA5, count: capacity)
                src.withUnsafeBytes { s in
                    dst.withUnsafeMutableBytes { d in dlk_copy(d.baseAddress! + to, s.baseAddress! + from, Int64(length)) }
                }
                #expect(Array(dst[to..<(to + length)]) == Array(src[from..<(from + length)]), "\(length) bytes, \(from) -> \(to)")
                #expect(dst[..<to].allSatisfy { $0 == 0xA5 } && dst[(to + length)...].allSatisfy { $0 == 0xA5 },
                        "\(length) bytes, \(from) -> \(to): written outside")
            }
        }
    }
}

/// The kernels load 8 or 16 floats at a time from rows of W^T, of the batch and of the
/// gradients; a row that starts off a cache line splits every other load across two lines
/// (the first layer's product ran 20% slower so). Every tensor and buffer starts on one.
@Suite struct AlignmentTests {
    static func onCacheLine(_ p: UnsafeRawPointer) -> Bool { Int(bitPattern: p) % dataAlignment == 0 }

    @Test func tensorsAndBuffersStartOnCacheLines() throws {
        #expect(dataAlignment == 64)
        // Small blocks come from malloc's arenas, large ones (over 128 KB) from mmap, 16
        // bytes past a page: both kinds, as created and as grown by resize / reserve.
        for count in [1, 3, 17, 100, 1000, 40_000, 100_352, 1 << 20] {
            let t = try Tensor<Float>(shape: [count])
            #expect(Self.onCacheLine(t.data), "Tensor<Float>(\(count))")
            try t.resize([count * 3 + 5])
            #expect(Self.onCacheLine(t.data), "Tensor<Float> grown to \(count * 3 + 5)")
            let d = try Tensor<Double>(shape: [count, 2])
            #expect(Self.onCacheLine(d.data), "Tensor<Double>(\(count), 2)")
            let b = Buffer<Float>()
            #expect(b.reserve(count))
            #expect(Self.onCacheLine(b.base), "Buffer<Float>.reserve(\(count))")
            #expect(b.reserve(count * 2 + 7))
            #expect(Self.onCacheLine(b.base), "Buffer<Float> grown to \(count * 2 + 7)")
        }
    }

    @Test func everyParameterAndGradientStartsOnACacheLine() throws {
        let spec = try SpecParser.parse(json: """
        {"input": {"size": 784}, "layers": [{"type": "linear", "units": 128}, {"type": "relu"},
         {"type": "linear", "units": 10}], "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}}
        """)
        let model = try Model<Float>(spec: spec)
        for p in model.parameters {
            #expect(Self.onCacheLine(p.value.data), "\(p.name)")
            #expect(Self.onCacheLine(p.grad.data), "\(p.name) gradient")
        }
    }
}
