import CDeepLearningKernels

/// 2-D convolution over NCHW images (cross-correlation, as in PyTorch), lowered by im2col
/// to matrix products.
///
///     x: (B, C, H, W)   weight: (F, C, kh, kw), a matrix (F, K) with K = C kh kw   bias: (F)
///     cols = im2col(x): (K, B P), P = OH OW     Y = weight cols: (F, B P)
///     y[b, f] = Y[f, b-th block of P] + bias[f]:  (B, F, OH, OW)
///     dY = dy arranged as Y     dW = dY cols^T: (F, K)     db[f] = sum of dy[:, f]
///     dcols = weight^T dY: (K, B P)     dx = col2im(dcols)
///
/// Y and dcols are computed a few samples at a time (`pieceElements`), each piece on one
/// kernel thread while its data is in that core's cache. The pieces follow from the shape
/// alone, so results do not depend on the number of threads. Two paths:
///
/// - float32 where the CPU has AVX2/FMA, the library's kernel
///   (`Kernels.unpackedGemmOnThisThread`): each piece's columns are lowered into a buffer of
///   its own and multiplied a sample at a time straight into y; dcols[b] = weight^T dy[b]
///   from dy as it is; dW^T = cols dy^T a slice of the batch at a time, each slice's
///   columns lowered again piece by piece and its dy transposed (`weightGradientInPieces`).
///   The layer caches x only.
/// - elsewhere (float64, older CPUs), OpenBLAS: each piece one call through a buffer
///   rearranged into y, cols kept whole for dW = dY cols^T, one call per slice of the batch
///   (`weightGradient`). The layer caches x and its columns; a batch whose columns would
///   exceed `columnLimit` elements is lowered in groups of samples, and backward then lowers
///   x again group by group, so evaluating thousands of samples at once stays within
///   bounded memory.
///
/// Either way the slices' partial sums of dW are added in slice order.
public final class Conv2D<T: DLScalar>: Layer {
    public let type = "conv2d"
    public let inChannels: Int
    public let filters: Int
    public let window: Window2D
    public let weight: Parameter<T>
    public let bias: Parameter<T>?
    public var outputShape: [Int] { [filters, window.outHeight, window.outWidth] }
    public var parameters: [Parameter<T>] { bias.map { [weight, $0] } ?? [weight] }
    /// The columns, their gradient and the product, for one sample: (2 K + F) P.
    public var workspacePerSample: Double { Double(2 * taps + filters) * Double(window.outputPlane) }

    /// Largest column buffer in elements (64 MiB of float32); tests lower it to exercise groups.
    public var columnLimit = 1 << 24

    /// The forward product and the input gradient's columns are computed a few samples at a
    /// time, in pieces of about this many elements (1 MB of float32, a core's L2 cache here;
    /// in mnist_cnn 256 KB and 4 MB pieces measured 2-6% slower a step, 2 MB the same);
    /// tests lower it to exercise several pieces.
    public var pieceElements = 1 << 18

    /// The least multiply-adds in a slice of the weight gradient's product
    /// (`weightGradient`); tests lower it to exercise several slices.
    public var sliceWork = GemmBlocks.minWork

    /// Elements between the end of a row of the columns and the next one's start (64 bytes
    /// of float32), so that rows a multiple of 4 KB apart do not fall in the same few sets
    /// of the L1 cache when a product reads down a column of them.
    private var columnPad: Int { 16 }

    /// K = C kh kw, the rows of the columns.
    private let taps: Int
    private var x: Tensor<T>?
    /// Whether `cols` holds the lowering of the whole cached x (one group).
    private var columnsCover = false
    private let cols: Tensor<T>
    private let product: Tensor<T>
    /// A buffer for each share of the work (`reservePieces`): the forward's pieces'
    /// products, then backward's pieces of dcols (training runs one direction at a time;
    /// evaluation has its own in its scratch).
    private let pieces: Tensor<T>
    /// The weight gradient's partial sums, one per slice of the batch (`weightGradient`).
    private let partials: Tensor<T>
    private let y: Tensor<T>
    private let dx: Tensor<T>

    public init(inChannels: Int, filters: Int, window: Window2D, bias: Bool = true) throws(DLError) {
        self.inChannels = inChannels
        self.filters = filters
        self.window = window
        self.taps = try checkedCount([inChannels, window.kernelHeight, window.kernelWidth], "conv2d kernel")
        self.weight = try Parameter("weight", shape: [filters, inChannels, window.kernelHeight, window.kernelWidth])
        self.bias = bias ? try Parameter("bias", shape: [filters]) : nil
        self.cols = try Tensor(shape: [0])
        self.product = try Tensor(shape: [0])
        self.pieces = try Tensor(shape: [0])
        self.partials = try Tensor(shape: [0])
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    /// Samples lowered together: as many as fit `columnLimit`, at least one.
    private func groupSize(_ batch: Int) -> Int {
        max(1, min(batch, columnLimit / max(1, taps * window.outputPlane)))
    }

    /// Calls `body(first sample, samples)` for each group of the batch, with `cols` and
    /// `product` (when given) sized for the group.
    private func forEachGroup(_ batch: Int, cols: Tensor<T>, product: Tensor<T>?,
                              _ body: (Int, Int) throws(DLError) -> Void) throws(DLError) {
        let group = groupSize(batch)
        let width = try checkedProduct(group, window.outputPlane, "conv2d columns")
        try cols.resize([taps, width + columnPad])
        try product?.resize([filters, width])
        var start = 0
        while start < batch {
            let n = min(group, batch - start)
            try body(start, n)
            start += n
        }
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        if Kernels.hasUnpackedGemm(T.self) {
            try convolveInPieces(x, into: y, pieces: pieces)
        } else {
            try convolve(x, into: y, cols: cols, pieces: pieces)
            columnsCover = groupSize(x.shape[0]) >= x.shape[0]
        }
        self.x = x
        return y
    }

    /// Evaluation in `scratch` (0: y, 1: columns, 2: the pieces' buffers).
    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        let y = scratch.output
        if Kernels.hasUnpackedGemm(T.self) {
            try convolveInPieces(x, into: y, pieces: try scratch.tensor(2))
        } else {
            try convolve(x, into: y, cols: try scratch.tensor(1), pieces: try scratch.tensor(2))
        }
        return y
    }

    /// Samples in a piece of the library's kernel path: its columns and their product (the
    /// forward) or its columns and its dy transposed (the weight gradient) take about
    /// `pieceElements`.
    private var samplesPerColumnPiece: Int { samplesPerPiece((taps + filters) * window.outputPlane) }

    /// Sizes `buffers` for the library's kernel path: one buffer for each share of the work
    /// (of `items` items), a piece's columns (rows `columnPad` longer) and its dy transposed.
    private func reserveColumnPieces(_ buffers: Tensor<T>, items: Int) throws(DLError) {
        let per = samplesPerColumnPiece, plane = window.outputPlane
        let slot = try checkedProduct(taps, per * plane + columnPad, "conv2d columns") + per * plane * filters
        try buffers.resize([max(1, min(items, Kernels.maxShares)), slot])
    }

    /// y = conv(x) with the library's kernel (float32 on AVX2/FMA), in pieces of a few samples
    /// on the kernel threads: a piece's columns are lowered into its share's buffer and
    /// multiplied a sample at a time straight into y while they are in the core's cache. No
    /// columns of the whole batch: backward lowers x again, piece by piece
    /// (`weightGradientInPieces`), which costs less than writing the batch's columns (14 MB in
    /// mnist_cnn's second convolution) to memory and reading them back. The pieces follow
    /// from the shape alone (the same bits with any number of threads).
    private func convolveInPieces(_ x: Tensor<T>, into y: Tensor<T>, pieces: Tensor<T>) throws(DLError) {
        let batch = x.shape[0], inSample = inChannels * window.inputPlane, outSample = filters * window.outputPlane
        let plane = window.outputPlane, per = samplesPerColumnPiece
        try y.resize(batch: batch, sample: outputShape)
        try reserveColumnPieces(pieces, items: (batch + per - 1) / per)
        let (input, output, w, b) = (x.data, y.data, weight.value.data, bias?.value.data)
        forEachPiece(batch, per: per, buffers: pieces) { first, count, columns in
            let stride = count * plane + columnPad
            Kernels.im2col(input + first * inSample, columns, batch: count, channels: inChannels, window, rowStride: stride)
            for s in 0..<count {
                let out = output + (first + s) * outSample
                Kernels.unpackedGemmOnThisThread(transA: false, m: filters, n: plane, k: taps, a: w, lda: taps,
                                                 b: columns + s * plane, ldb: stride, c: out, ldc: plane)
                if let b { Kernels.addPerChannel(b, out, channels: filters, plane: plane) }
            }
        }
    }

    /// y = conv(x), a group of samples at a time (`columnLimit`), each group in pieces of a
    /// few samples on the kernel threads: a piece's columns are lowered into the group's
    /// `cols` (which backward uses whole) and multiplied while they are in the core's cache:
    /// a sample at a time into y with the library's kernel, or by OpenBLAS into a buffer of
    /// the piece's own that is then rearranged into y. The whole group's product (3 to 6 MB
    /// in mnist_cnn, zeroed by OpenBLAS first) no longer goes through memory twice. The
    /// pieces follow from the shape alone (the same bits with any number of threads).
    private func convolve(_ x: Tensor<T>, into y: Tensor<T>, cols: Tensor<T>, pieces: Tensor<T>) throws(DLError) {
        let batch = x.shape[0], inSample = inChannels * window.inputPlane, outSample = filters * window.outputPlane
        let plane = window.outputPlane, per = samplesPerPiece((taps + filters) * plane)
        try y.resize(batch: batch, sample: outputShape)
        try reservePieces(pieces, batch: batch, per: per, elementsPerSample: filters * plane)
        try forEachGroup(batch, cols: cols, product: nil) { (start, n) throws(DLError) in
            let width = n * plane, stride = width + columnPad
            let (input, output, columns) = (x.data + start * inSample, y.data + start * outSample, cols.data)
            let (w, b, unpacked) = (weight.value.data, bias?.value.data, Kernels.hasUnpackedGemm(T.self))
            forEachPiece(n, per: per, buffers: pieces) { first, count, buffer in
                Kernels.im2col(input + first * inSample, columns + first * plane, batch: count,
                               channels: inChannels, window, rowStride: stride)
                if unpacked {   // each sample's product straight into its y
                    for s in 0..<count {
                        let out = output + (first + s) * outSample
                        Kernels.unpackedGemmOnThisThread(transA: false, m: filters, n: plane, k: taps, a: w, lda: taps,
                                                         b: columns + (first + s) * plane, ldb: stride, c: out, ldc: plane)
                        if let b { Kernels.addPerChannel(b, out, channels: filters, plane: plane) }
                    }
                } else {
                    T.blasGemm(transA: false, transB: false, m: filters, n: count * plane, k: taps,
                               alpha: 1, a: w, lda: taps, b: columns + first * plane, ldb: stride,
                               beta: 0, c: buffer, ldc: count * plane)
                    Kernels.columnsToSamples(buffer, output + first * outSample, bias: b,
                                             batch: count, channels: filters, plane: plane)
                }
            }
        }
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard let x, x.shape[0] == dy.shape[0] else { throw .invalid("conv2d: backward called before forward, or with another batch size") }
        let batch = dy.shape[0], inSample = inChannels * window.inputPlane, outSample = filters * window.outputPlane
        if let bias { Kernels.channelSums(dy.data, bias.grad.data, batch: batch, channels: filters, spatial: window.outputPlane) }
        if needInputGradient { try dx.resize(batch: batch, sample: [inChannels, window.height, window.width]) }
        if Kernels.hasUnpackedGemm(T.self) {
            try weightGradientInPieces(x: x.data, dy: dy.data, samples: batch)
            guard needInputGradient else { return nil }
            try reservePieces(pieces, batch: batch, per: inputGradientSamples, elementsPerSample: taps * window.outputPlane)
            inputGradient(nil, ldY: 0, dy: dy.data, samples: batch, into: dx.data)
            return dx
        }
        if needInputGradient {
            try reservePieces(pieces, batch: batch, per: inputGradientSamples, elementsPerSample: taps * window.outputPlane)
        }
        // dY, arranged as Y.
        let dProduct = product
        try forEachGroup(batch, cols: cols, product: product) { (start, n) throws(DLError) in
            let width = n * window.outputPlane
            if !columnsCover {
                Kernels.im2col(x.data + start * inSample, cols.data, batch: n, channels: inChannels, window,
                               rowStride: width + columnPad)
            }
            Kernels.samplesToColumns(dy.data + start * outSample, dProduct.data, batch: n, channels: filters,
                                     plane: window.outputPlane)
            try weightGradient(dProduct.data, cols: cols.data, ldCols: width + columnPad, samples: n,
                               accumulate: start > 0)
            guard needInputGradient else { return }
            inputGradient(dProduct.data, ldY: width, dy: dy.data + start * outSample, samples: n,
                          into: dx.data + start * inSample)
        }
        return needInputGradient ? dx : nil
    }

    /// Slices of the batch the weight gradient is cut into (partial sums added in order): at
    /// most 8, one per sample at most, each of at least `sliceWork` multiply-adds; a function
    /// of the shape only.
    private func weightGradientSlices(_ samples: Int) -> Int {
        let work = (filters * taps).multipliedReportingOverflow(by: samples * window.outputPlane)
        return max(1, min(8, samples, work.overflow ? 8 : work.partialValue / max(1, sliceWork)))
    }

    /// dW = dY cols^T over `samples` samples (dY's rows samples P long, cols' rows `ldCols`
    /// apart), added to dW with `accumulate`. The samples are cut into slices fixed by the
    /// shape (`weightGradientSlices`); each slice's product, one OpenBLAS call on a kernel
    /// thread, goes into a partial of its own, and the partials are added in slice order (to
    /// dW's old value first with `accumulate`). Cutting dW's columns
    /// instead, as `T.gemm` does, made every call pack the whole of dY again: in mnist_cnn's
    /// second convolution 8 column blocks took 7.5 ms on one core against 6.0 for 8 slices
    /// and their sum.
    private func weightGradient(_ dY: UnsafePointer<T>, cols: UnsafePointer<T>, ldCols: Int, samples: Int,
                                accumulate: Bool) throws(DLError) {
        let plane = window.outputPlane, width = samples * plane, size = filters * taps
        let slices = weightGradientSlices(samples)
        try partials.resize([slices, size])
        let (out, parts) = (weight.grad.data, partials.data)
        withBLAS {
            Kernels.parallelFor(slices) { range in
                for slice in range {
                    let first = samples * slice / slices * plane, last = samples * (slice + 1) / slices * plane
                    T.blasGemm(transA: false, transB: true, m: filters, n: taps, k: last - first,
                               alpha: 1, a: dY + first, lda: width, b: cols + first, ldb: ldCols,
                               beta: 0, c: parts + slice * size, ldc: taps)
                }
            }
        }
        if !accumulate { out.update(from: parts, count: size) }
        for slice in (accumulate ? 0 : 1)..<slices { Kernels.add(parts + slice * size, into: out, size) }
    }

    /// dW = dy cols^T with the library's kernel (float32 on AVX2/FMA), which wants its second
    /// operand with rows of contiguous columns, so it computes dW^T = cols dy^T (K, F). The
    /// samples are cut into `weightGradient`'s slices (fixed by the shape), each on a kernel
    /// thread, and each slice into pieces of `samplesPerColumnPiece` samples from its start:
    /// a piece's columns are lowered from x again and its dy transposed to (P, F) in the
    /// share's buffer, and the piece's product is added to the slice's partial (`accumulate`),
    /// all in the core's cache. The partials are added in slice order and the sum transposed
    /// into dW. On mnist_cnn's second convolution, one
    /// core, the product alone: 2.8 ms from columns in cache, 4.9 from the whole batch's
    /// columns in L3, against OpenBLAS's 16 (the SSE3 kernels Debian's OpenBLAS chose on a
    /// Sapphire Rapids Xeon) or 4.3 (its AVX-512 ones); AVX2 5.7 against 6.9 (Haswell).
    private func weightGradientInPieces(x: UnsafePointer<T>, dy: UnsafePointer<T>, samples: Int) throws(DLError) {
        let plane = window.outputPlane, inSample = inChannels * window.inputPlane, outSample = filters * plane
        let size = filters * taps, per = samplesPerColumnPiece
        // A power of two, so that 2, 4 or 8 threads get equal shares (7 slices left one of two
        // threads waiting a seventh of mnist_cnn's first convolution's weight gradient).
        let most = weightGradientSlices(samples)
        let slices = 1 << (Int.bitWidth - 1 - most.leadingZeroBitCount)
        try partials.resize([slices, size])
        try reserveColumnPieces(pieces, items: slices)
        let (filters, taps, channels, window, pad) = (self.filters, self.taps, inChannels, self.window, columnPad)
        let (parts, buffers, slot) = (partials.data, pieces.data, pieces.shape[1])
        Kernels.parallelShares(slices) { range, share in
            let columns = buffers + share * slot
            for slice in range {
                let (first, last) = (samples * slice / slices, samples * (slice + 1) / slices)
                var start = first
                while start < last {
                    let count = min(per, last - start), stride = count * plane + pad
                    let transposed = columns + taps * stride
                    Kernels.im2col(x + start * inSample, columns, batch: count, channels: channels, window,
                                   rowStride: stride)
                    for b in 0..<count {
                        Kernels.transpose(dy + (start + b) * outSample, rows: filters, cols: plane,
                                          into: transposed + b * outSample)
                    }
                    Kernels.unpackedGemmOnThisThread(transA: false, m: taps, n: filters, k: count * plane, a: columns,
                                                     lda: stride, b: transposed, ldb: filters,
                                                     c: parts + slice * size, ldc: filters, accumulate: start > first)
                    start += count
                }
            }
        }
        for slice in 1..<slices { Kernels.add(parts + slice * size, into: parts, size) }
        Kernels.transpose(parts, rows: taps, cols: filters, into: weight.grad.data)
    }

    /// Samples per piece when each takes `elements` of the piece's `pieceElements`: a
    /// function of the layer's shape only (`convolve` counts its columns and their product,
    /// `inputGradient` the columns' gradient).
    private func samplesPerPiece(_ elements: Int) -> Int { max(1, pieceElements / max(1, elements)) }
    private var inputGradientSamples: Int { samplesPerPiece(taps * window.outputPlane) }

    /// Sizes `buffers` for `forEachPiece` over the groups of `batch`: one buffer of `per`
    /// samples' `elementsPerSample` for each share of the work.
    private func reservePieces(_ buffers: Tensor<T>, batch: Int, per: Int, elementsPerSample: Int) throws(DLError) {
        try buffers.resize([min((groupSize(batch) + per - 1) / per, Kernels.maxShares), per * elementsPerSample])
    }

    /// body(first sample, samples, buffer) for `samples` samples in pieces of `per`, the
    /// pieces on the kernel threads under the BLAS guard, each with its share's buffer (a
    /// row of `buffers`, sized by `reservePieces`).
    private func forEachPiece(_ samples: Int, per: Int, buffers: Tensor<T>,
                              _ body: (Int, Int, UnsafeMutablePointer<T>) -> Void) {
        let (data, slot) = (buffers.data, buffers.shape[1])
        withBLAS {
            Kernels.parallelShares((samples + per - 1) / per) { range, share in
                for piece in range {
                    let first = piece * per
                    body(first, min(per, samples - first), data + share * slot)
                }
            }
        }
    }

    /// dx of `samples` samples from their dY (columns 0 ..< samples P of rows `ldY` apart):
    /// dcols = weight^T dY then col2im, a few samples at a time, the pieces on the kernel
    /// threads. Each piece of dcols is written and read back while it is in the core's
    /// cache: the whole batch's dcols (14 MB in mnist_cnn's second convolution, written,
    /// zeroed first by OpenBLAS, and read again) went through memory. The pieces follow
    /// from the shape alone, so the bits do not depend on the number of threads.
    ///
    /// Float32 on AVX2 takes each sample's product from its dy (F x P, rows P apart) with the
    /// library's kernel, which writes dcols without OpenBLAS's packing and zeroing passes;
    /// dY is then not read (nil).
    private func inputGradient(_ dY: UnsafePointer<T>?, ldY: Int, dy: UnsafePointer<T>, samples: Int,
                               into dx: UnsafeMutablePointer<T>) {
        let plane = window.outputPlane, inSample = inChannels * window.inputPlane, w = weight.value.data
        let (outSample, unpacked) = (filters * plane, Kernels.hasUnpackedGemm(T.self))
        forEachPiece(samples, per: inputGradientSamples, buffers: pieces) { first, n, buffer in
            if unpacked {
                for s in 0..<n {
                    Kernels.unpackedGemmOnThisThread(transA: true, m: taps, n: plane, k: filters, a: w, lda: taps,
                                                     b: dy + (first + s) * outSample, ldb: plane,
                                                     c: buffer + s * plane, ldc: n * plane)
                }
            } else if let dY {
                T.blasGemm(transA: true, transB: false, m: taps, n: n * plane, k: filters,
                           alpha: 1, a: w, lda: taps, b: dY + first * plane, ldb: ldY,
                           beta: 0, c: buffer, ldc: n * plane)
            }
            Kernels.col2im(buffer, dx + first * inSample, batch: n, channels: inChannels, window)
        }
    }
}

public enum Conv2DFactory: LayerFactory {
    public static let kind = ComponentKind("conv2d", options: [
        OptionSpec("filters", .positiveInt, doc: "number of output channels"),
        OptionSpec("kernel_size", .positiveInts(count: 2), doc: "kernel height and width: k or [kh, kw]"),
        OptionSpec("stride", .positiveInts(count: 2), default: .int(1), doc: "step between windows: s or [sh, sw]"),
        OptionSpec("padding", .nonNegativeInts(count: 2), default: .int(0), doc: "zeros added on each side: p or [ph, pw]"),
        OptionSpec("bias", .bool, default: .bool(true), doc: "whether to add a bias per filter"),
        OptionSpec("init", .choice(Initializer.allCases.map(\.rawValue)), default: .string(""),
                   doc: "weight initializer; defaults to the spec's \"init\""),
    ], doc: "2-D convolution over [C, H, W] images, weight (filters, C, kh, kw)")

    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        let me = context.describe("conv2d")
        let (channels, window) = try Window2D.read(spec, context, type: "conv2d")
        let filters = try spec.int("filters")
        _ = try checkedCount([filters, window.outHeight, window.outWidth], "\(me) output")
        let fanIn = try checkedProduct(channels, window.kernelArea, "\(me) kernel")
        let weights = try checkedProduct(filters, fanIn, "\(me) weight (\(filters), \(channels), \(window.kernelHeight), \(window.kernelWidth))")
        try context.reserve(weights + filters, me)
        let layer = try Conv2D<T>(inChannels: channels, filters: filters, window: window, bias: try spec.bool("bias"))
        let initializer = Initializer(rawValue: try spec.string("init")) ?? context.defaultInitializer
        initializer.fill(layer.weight.value, fanIn: fanIn, fanOut: filters * window.kernelArea, rng: &context.rng)
        return layer
    }
}
