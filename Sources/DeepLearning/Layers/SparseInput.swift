import CDeepLearningKernels

/// The sparse-input path of a float32 `Linear` layer that sees the model's input batch,
/// whose batches are often mostly one value.
///
/// Raw image pixels are mostly background, and after standardization every background
/// pixel is still one and the same value `v`. Writing the batch as `x = v + S`, with `S`
/// sparse,
///
///     y  = x W^T + b   = S W^T + (b + v rowsum(W))
///     dW = dy^T x      = dy^T S + v colsum(dy) 1^T
///
/// so both products cost time in proportion to the nonzeros of `S` instead of the whole
/// batch (C kernels in `CDeepLearningKernels`, with AVX2/FMA versions). The layer keeps
/// its weight as W^T (`TransposedMatrix`): a nonzero input j adds row j of W^T to its output
/// row, and row j of dW^T is a sum of rows of dy, so neither product transposes. The
/// results are the same sums as the dense path's, accumulated in another order: they agree
/// to float32 rounding, and the same batch always takes the same path, so runs stay
/// reproducible.
///
/// Used for batches of at least `minimumRows` samples in which at most `maxDensity` of the
/// entries differ from `v`, tried first as the most common of a few sampled entries, then
/// zero. A single sample to predict takes the sparse path when at most `singleMaxDensity`
/// of its inputs differ from its background, with the base term `b + v rowsum(W)` kept in
/// the caller's workspace while the weights and v stay the same (`Parameter.generation`),
/// so that it reads only the rows of W^T its nonzeros need; other single samples to predict
/// are multiplied by the rows of W, a copy the workspace keeps while the weight stays the
/// same (`keptWeight`), both cores each reading the contiguous rows of its outputs; in
/// training, by a dense kernel on W^T (BLAS's `gemv` would wake its threads for a product
/// this size).
/// Other batches take the layer's BLAS path. What is predicted can come raw, before the
/// model's preprocessing x * m + o (`Linear.inferFolded`): the compression then maps each
/// entry as it reads it (`multiplyRaw`, `predictOneRaw`), and the dense products take m as
/// their scale and o rowsum(W) into their bias (`foldedBase`).
final class SparseInput {
    static let minimumRows = 8
    /// Above about a quarter of the entries, BLAS's dense product is as fast.
    static let maxDensity = 0.25
    /// The cost model samples every `sampleEvery`-th row of a batch of at least 4 of them,
    /// and compresses when the sample is within `sampleMargin` times `maxDensity` (the
    /// compression itself then decides, with the exact count).
    static let sampleEvery = 16
    static let sampleMargin = 1.25
    /// A single sample with at most this fraction of inputs off its background is faster
    /// sparse than dense, both on the kernel threads (measured in bench/README.md, "One
    /// sample" and "One sample on both cores": Fashion-MNIST's items, about half background,
    /// 3.3-3.6 us at 0.65-0.9, 4.0-4.8 at 0.5; at 1.0 a sample without background, 12 us).
    static let singleMaxDensity = 0.8

    let inFeatures: Int
    let outFeatures: Int
    /// The forward's workspace (see `dlk_sparse_batch`): the layer's own for training, each
    /// caller's own for inference (`InferenceScratch`).
    ///
    /// A workspace serves one call at a time (a layer's own, or one inference context's),
    /// so its flags and keys carry no run-time exclusivity checks: a single sample to
    /// predict set them 4 times, each check a thread-local lookup.
    final class Workspace {
        let rowBegin = Buffer<Int64>(), rowEnd = Buffer<Int64>()
        let index = Buffer<Int32>(), value = Buffer<Float>(), base = Buffer<Float>(), partial = Buffer<Float>()
        /// The last batch was too dense to compress: the next attempt runs on the calling
        /// thread alone (and multiplies only if the whole batch compressed). On dense data
        /// every attempt fails, and a failed attempt is too little work to pay for waking
        /// the kernel threads, which slept through the previous step's BLAS products; the
        /// layer's BLAS path then uses no pool at all.
        @exclusivity(unchecked) var lastFailed = false
        /// Single samples to predict: every chunk's base term (`dlk_sparse_bases`) for the
        /// weights and background in `basesKey`.
        let bases = Buffer<Float>()
        @exclusivity(unchecked) var basesKey: BasesKey? = nil
        /// Whether the last single sample took the sparse path (tests).
        @exclusivity(unchecked) var singleWasSparse = false
        /// Batches to predict from raw input (`foldedBase`): b + offset rowsum(W) for the
        /// weights and the offset in `foldedKey`.
        let folded = Buffer<Float>()
        @exclusivity(unchecked) var foldedKey: BasesKey? = nil
        /// Whether the last batch to predict was multiplied from raw input (tests), and
        /// whether through the sparse path.
        @exclusivity(unchecked) var lastWasFolded = false
        @exclusivity(unchecked) var lastFoldedWasSparse = false
        /// Single dense samples to predict: W (out x in), the transpose of the weight as the
        /// layer keeps it (`keptWeight`).
        let weight = WeightCopy<Float>()
    }

    /// What the kept base terms were computed from: the versions of the weight and the
    /// bias (`Parameter.generation`, 0 without a bias) and the background's bits.
    struct BasesKey: Equatable {
        let weight: UInt64, bias: UInt64, background: UInt32
    }
    private let workspace = Workspace()
    /// (x - v)^T for the weight gradient.
    private let transposedBatch = Buffer<Float>()
    private let gradientBase = Buffer<Float>(), columnSum = Buffer<Float>()

    /// Tests: run the plain C kernels even where the AVX2 ones would.
    var forcePlainC = false

    /// The batch of the last forward pass that took the sparse path (0 when it did not):
    /// its rows and the value `v` it was compressed around.
    private(set) var rows = 0
    private(set) var background: Float = 0
    var lastForwardWasSparse: Bool { rows > 0 }

    init(inFeatures: Int, outFeatures: Int) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    /// y (rows x out) = x W^T + bias for x (rows x inFeatures), from the weight stored as
    /// W^T (in x out), for a single sample or a batch sparse enough. False (y then garbage,
    /// nothing kept) for other batches, for a model not in float32, or when a buffer cannot be
    /// allocated: the layer then takes its BLAS path.
    func forward<T: DLScalar>(_ x: Tensor<T>, weightT: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>) -> Bool {
        rows = 0
        switch multiply(x, weightT: weightT, bias: bias, y: y, workspace: workspace) {
        case .none: return false
        case .single: return true
        case .sparse(let v):
            (rows, background) = (x.shape[0], v)
            return true
        }
    }

    /// How `multiply` computed y, if it did.
    enum Product {
        case none, single, sparse(background: Float)

        /// Whether y was computed.
        var done: Bool {
            if case .none = self { return false }
            return true
        }
    }

    /// `forward`'s product with the given workspace, keeping nothing: what inference calls,
    /// any number of threads at once, each with its own workspace. With `generations` (the
    /// weight's and the bias's, from inference), a single sample may take the sparse path.
    func multiply<T: DLScalar>(_ x: Tensor<T>, weightT: Tensor<T>, bias: Tensor<T>?, y: Tensor<T>,
                               workspace: Workspace, generations: (weight: UInt64, bias: UInt64)? = nil) -> Product {
        guard T.self == Float.self else { return .none }
        let batch = x.shape[0]
        let chunks = Int(DLK_SPARSE_CHUNKS)
        if batch == 1 {
            workspace.singleWasSparse = false
            if let generations, single(floats(x), weightT: floats(weightT), bias: bias.map(floats), y: floats(y),
                                       generations: generations, workspace: workspace) {
                workspace.singleWasSparse = true
                return .single
            }
            if let generations, let w = keptWeight(floats(weightT), generation: generations.weight, workspace: workspace) {
                let (i, o) = (Int64(inFeatures), Int64(outFeatures))
                dlk_matrix_vector_affine_f32(w, o, i, i, floats(x), 1, bias.map(floats), floats(y), plainC)
                return .single
            }
            guard workspace.partial.reserve((chunks - 1) * outFeatures) else { return .none }
            dlk_row_times_matrix(floats(x), Int64(inFeatures), floats(weightT), Int64(outFeatures), bias.map(floats),
                                 workspace.partial.base, floats(y), plainC)
            return .single
        }
        guard let total = compressibleEntries(batch) else { return .none }
        let xf = floats(x)
        var v = SparseInput.likelyBackground(xf, count: total, plainC: forcePlainC)
        // The cost model: a look at one row in `sampleEvery` first. A batch that looks too
        // dense around v and around 0 goes to BLAS for the price of that look, instead of a
        // compression that fails halfway (twice, when v is not 0).
        let sampleRows = batch / SparseInput.sampleEvery
        if sampleRows >= 4 {
            switch looksSparse(xf, batch: batch, around: v, sampleRows: sampleRows) {
            case (false, false):
                workspace.lastFailed = true
                return .none
            case (false, true): v = 0
            default: break
            }
        }
        guard let used = compressAndMultiply(xf, batch: batch, total: total, background: v, thenZero: true,
                                             affine: nil, weightT: floats(weightT), bias: bias.map(floats), y: floats(y),
                                             workspace: workspace) else { return .none }
        return .sparse(background: used)
    }

    /// `multiply` for a batch to predict given raw, before the model's preprocessing
    /// x * a + b, which the compression applies to each entry as it reads it
    /// (`dlk_sparse_batch.affine`): the same values as the preprocessed batch, and so the
    /// same bits as `multiply` on it around the same background, without writing the
    /// preprocessed batch first. The cost model looks at the raw values (the preprocessing
    /// maps equal values to equal values), at one row in `sampleEvery` but at least 4, and
    /// only around the batch's raw likely background, whose mapped value is then the one
    /// compressed around (0 is not tried). A NaN or an infinity in x makes its row of y not
    /// finite. False (y garbage) when the batch is too small, looks or turns out too dense,
    /// or a buffer cannot be had.
    func multiplyRaw(_ x: UnsafePointer<Float>, batch: Int, multiplier a: Float, offset b: Float,
                     weightT: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                     workspace: Workspace) -> Bool {
        guard let total = compressibleEntries(batch) else { return false }
        let background = SparseInput.likelyBackground(x, count: total, plainC: forcePlainC)
        let sampleRows = min(batch, max(4, batch / SparseInput.sampleEvery))
        guard looksSparse(x, batch: batch, around: background, sampleRows: sampleRows).aroundV else { return false }
        return withAffine(a, b) { affine in
            compressAndMultiply(x, batch: batch, total: total, background: background * a + b, thenZero: false,
                                affine: affine, weightT: weightT, bias: bias, y: y, workspace: workspace) != nil
        }
    }

    /// The entries of a batch of `batch` rows when `multiply` may compress it: at least
    /// `minimumRows` rows, and entries that the kernels' Int32 columns and counts can hold.
    private func compressibleEntries(_ batch: Int) -> Int? {
        guard batch >= SparseInput.minimumRows, inFeatures < Int(Int32.max) else { return nil }
        let total = batch.multipliedReportingOverflow(by: inFeatures)
        guard !total.overflow, total.partialValue < Int(Int32.max) else { return nil }
        return total.partialValue
    }

    /// The cost model's look at `sampleRows` rows spread over the batch x: whether few
    /// enough of their entries differ from v, and from 0, for a compression to pay
    /// (`maxDensity` with `sampleMargin`).
    private func looksSparse(_ x: UnsafePointer<Float>, batch: Int, around v: Float,
                             sampleRows: Int) -> (aroundV: Bool, aroundZero: Bool) {
        var notV: Int64 = 0, notZero: Int64 = 0
        dlk_sample_density(x, Int64(batch), Int64(inFeatures), v, Int64(sampleRows), &notV, &notZero, plainC)
        let most = Double(sampleRows * inFeatures) * SparseInput.maxDensity * SparseInput.sampleMargin
        return (Double(notV) <= most, Double(notZero) <= most)
    }

    /// `body` with {a, b} in memory, as `dlk_sparse_batch.affine` takes them.
    private func withAffine<R>(_ a: Float, _ b: Float, _ body: (UnsafePointer<Float>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2) { affine in
            affine[0] = a
            affine[1] = b
            return body(UnsafePointer(affine.baseAddress!))
        }
    }

    /// Compresses the batch x (`total` entries) around `background`, then, when that fails
    /// and `thenZero`, around 0, and multiplies (`dlk_sparse_forward`, with `affine` as in
    /// `dlk_sparse_batch`); the background it took, or nil (y garbage) when the batch was
    /// too dense around each or a buffer cannot be had.
    private func compressAndMultiply(_ xf: UnsafePointer<Float>, batch: Int, total: Int, background: Float, thenZero: Bool,
                                     affine: UnsafePointer<Float>?, weightT: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                                     workspace: Workspace) -> Float? {
        let chunks = Int(DLK_SPARSE_CHUNKS)
        let (rowBegin, rowEnd, index, value, base, partial) = (workspace.rowBegin, workspace.rowEnd, workspace.index,
                                                               workspace.value, workspace.base, workspace.partial)
        let limit = Int(Double(total) * SparseInput.maxDensity)
        let capacity = limit + inFeatures + 8
        // A unit of work per chunk of inputs and group of rows: as many groups as it takes
        // to give every kernel thread a unit (one group on two threads).
        let groups = workspace.lastFailed ? 1 : min((Kernels.threads + chunks - 1) / chunks, batch, Int(DLK_MAX_THREADS))
        let units = chunks * groups
        guard rowBegin.reserve(chunks * batch), rowEnd.reserve(chunks * batch), index.reserve(units * capacity),
              value.reserve(units * capacity), base.reserve(units * outFeatures),
              partial.reserve((chunks - 1) * batch * outFeatures) else { return nil }
        var work = dlk_sparse_batch(row_begin: rowBegin.base, row_end: rowEnd.base, index: index.base, value: value.base,
                                    groups: Int64(groups), segment_capacity: Int64(capacity),
                                    serial: workspace.lastFailed ? 1 : 0, base: base.base, partial: partial.base,
                                    bases: nil, affine: affine)
        var v = background
        while true {
            let n = dlk_sparse_forward(xf, Int64(batch), Int64(inFeatures), v, Int64(limit), weightT,
                                       Int64(outFeatures), bias, &work, y, plainC)
            if n >= 0 {
                workspace.lastFailed = false
                return v
            }
            if v == 0 || !thenZero {
                workspace.lastFailed = true
                return nil
            }
            v = 0
        }
    }

    /// One sample x through the sparse path, around its likely background or else 0, when
    /// few enough of its inputs differ from it (`singleMaxDensity`): its two chunks of
    /// inputs on the kernel threads, as a batch's, with the base terms kept in `workspace`
    /// (computed again when the weights, the bias or the background changed). The same sums
    /// as a batch through `dlk_sparse_forward` around the same background. False (y then
    /// garbage) when the sample is too dense or a buffer cannot be had.
    /// With `affine` ({a, b}, see `dlk_sparse_batch`), x is a raw sample whose preprocessed
    /// values x * a + b are compressed as they are read, around its raw background's (0 is
    /// not tried then).
    private func single(_ x: UnsafePointer<Float>, weightT: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        y: UnsafeMutablePointer<Float>, generations: (weight: UInt64, bias: UInt64),
                        workspace: Workspace, affine: UnsafePointer<Float>? = nil) -> Bool {
        let chunks = Int(DLK_SPARSE_CHUNKS), (i, o) = (inFeatures, outFeatures)
        let limit = Int(Double(i) * SparseInput.singleMaxDensity)
        var (v, matches) = SparseInput.likelyBackgroundAndMatches(x, count: i, plainC: forcePlainC)
        var notV: Int64 = 0, notZero: Int64 = 0
        if affine != nil {
            // Raw input tries no other value than v. When no value is among more than two of
            // the 16 picks the sample has no background to speak of: dense, without counting.
            // (Two, not one: 8-bit pixels repeat by chance. A value on 30% of the inputs is
            // found at most twice with probability 10%, on half of them 0.2%; the sparse
            // path takes up to 80% density but gains little above 70%, and the dense product
            // gives the same sums to rounding.) From `countlessMatches` picks on, it is not
            // counted either: the forward stops compressing past `limit` entries off v and
            // fails, and the sample then takes the dense product; a wasted start (a job on
            // both cores) on a sample too dense all the same, which six picks in 16 make rare
            // (a fifth of the inputs on v gives six or more 8% of the times). In between it
            // is counted: compressing every textured MNIST sample whose picks repeat three
            // times cost 30% more instructions a call than counting them.
            if matches <= 2 { return false }
            if matches < SparseInput.countlessMatches {
                dlk_sample_density(x, 1, Int64(i), v, 1, &notV, nil, plainC)
                if notV > limit { return false }
            }
        } else {   // preprocessed input: around v, or else around 0
            dlk_sample_density(x, 1, Int64(i), v, 1, &notV, &notZero, plainC)
            if notV > limit {
                guard notZero <= limit else { return false }
                v = 0
            }
        }
        if let affine { v = v * affine[0] + affine[1] }   // two roundings, as the kernels
        let capacity = limit + i + 8
        // No `base` buffer: the forward reads it only for a v that is not 0 without `bases`.
        guard i < Int(Int32.max), workspace.rowBegin.reserve(chunks), workspace.rowEnd.reserve(chunks),
              workspace.index.reserve(chunks * capacity), workspace.value.reserve(chunks * capacity),
              workspace.partial.reserve((chunks - 1) * o) else { return false }
        var bases: UnsafePointer<Float>? = nil
        if v != 0 {
            bases = keptBases(workspace.bases, &workspace.basesKey, around: v, weightT: weightT, bias: bias,
                              generations: generations)
            guard bases != nil else { return false }
        }
        var work = dlk_sparse_batch(row_begin: workspace.rowBegin.base, row_end: workspace.rowEnd.base,
                                    index: workspace.index.base, value: workspace.value.base, groups: 1,
                                    segment_capacity: Int64(capacity), serial: 0, base: workspace.base.base,
                                    partial: workspace.partial.base, bases: bases, affine: affine)
        return dlk_sparse_forward(x, 1, Int64(i), v, Int64(limit), weightT, Int64(o), bias, &work, y, plainC) >= 0
    }

    /// One raw sample to predict, before the model's preprocessing x * a + b: through the
    /// sparse path with each input preprocessed as it is compressed (`single`, the same bits
    /// as the preprocessed sample there), else through the dense kernel on the raw values,
    /// y = a (x W^T) + (bias + b rowsum(W)) (`foldedBase`). A NaN or an infinity in x makes
    /// y not finite. False (y garbage) when a buffer cannot be had.
    func predictOneRaw(_ x: UnsafePointer<Float>, multiplier a: Float, offset b: Float, weightT: UnsafePointer<Float>,
                       bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                       generations: (weight: UInt64, bias: UInt64), workspace: Workspace) -> Bool {
        let sparse = withAffine(a, b) { affine in
            single(x, weightT: weightT, bias: bias, y: y, generations: generations, workspace: workspace, affine: affine)
        }
        workspace.singleWasSparse = sparse
        if sparse { return true }
        let o = outFeatures
        guard let base = foldedBase(weightT: weightT, bias: bias, offset: b, generations: generations,
                                    workspace: workspace) else { return false }
        if let w = keptWeight(weightT, generation: generations.weight, workspace: workspace) {
            dlk_matrix_vector_affine_f32(w, Int64(o), Int64(inFeatures), Int64(inFeatures), x, a, base, y, plainC)
            return true
        }
        guard workspace.partial.reserve((Int(DLK_SPARSE_CHUNKS) - 1) * o) else { return false }
        dlk_row_times_matrix(x, Int64(inFeatures), weightT, Int64(o), nil, workspace.partial.base, y, plainC)
        for j in 0..<o { y[j] = y[j] * a + base[j] }
        return true
    }

    /// Picks of 16 on a raw single sample's likely background from which it is compressed
    /// without counting its inputs first (`single`).
    static let countlessMatches = 6

    /// The most floats of weight a workspace keeps a transposed copy of (4 MB; `keptWeight`).
    static let maxKeptWeight = 1 << 20

    /// W (out x in), from the weight stored as W^T, kept in `workspace` while the weight's
    /// generation stays the same: what a single dense sample to predict is multiplied by.
    /// Each output's weights are then one contiguous row, and each kernel thread reads the
    /// rows of its outputs front to back (`dlk_matrix_vector_f32`), where W^T's columns would
    /// be read in strided passes. Nil for a weight of more than `maxKeptWeight` floats (a
    /// copy per inference context would cost too much memory) or when the buffer cannot be
    /// had.
    private func keptWeight(_ weightT: UnsafePointer<Float>, generation: UInt64,
                            workspace: Workspace) -> UnsafePointer<Float>? {
        let count = inFeatures * outFeatures   // the weight's element count: it exists
        guard count <= SparseInput.maxKeptWeight else { return nil }
        return workspace.weight.transposed(weightT, rows: inFeatures, cols: outFeatures, generation: generation)
    }

    /// b + offset rowsum(W): each output's bias plus `offset` times the sum of its weights,
    /// from the weight stored as W^T. The constant term of a batch multiplied from raw input
    /// x when the model's preprocessing is x * multiplier + offset:
    ///
    ///     (x m + o) W^T + b  =  m (x W^T) + (b + o rowsum(W))
    ///
    /// The sums of `dlk_sparse_bases`, added in chunk order; kept in `workspace` while the
    /// weight, the bias and the offset stay the same. Nil when its buffer cannot be had.
    func foldedBase(weightT: UnsafePointer<Float>, bias: UnsafePointer<Float>?, offset: Float,
                    generations: (weight: UInt64, bias: UInt64), workspace: Workspace) -> UnsafePointer<Float>? {
        keptBases(workspace.folded, &workspace.foldedKey, around: offset, weightT: weightT, bias: bias,
                  generations: generations) { bases in
            let o = outFeatures
            for h in 1..<Int(DLK_SPARSE_CHUNKS) { Kernels.add(bases + h * o, into: bases, o) }
        }
    }

    /// Every chunk's base term for background v (`dlk_sparse_bases`) in `buffer`, made
    /// again (and passed to `finish`) only when the weights, the bias or v differ from what
    /// `key` says they were made from. Nil when the buffer cannot be had.
    private func keptBases(_ buffer: Buffer<Float>, _ key: inout BasesKey?, around v: Float, weightT: UnsafePointer<Float>,
                           bias: UnsafePointer<Float>?, generations: (weight: UInt64, bias: UInt64),
                           finish: (UnsafeMutablePointer<Float>) -> Void = { _ in }) -> UnsafePointer<Float>? {
        let wanted = BasesKey(weight: generations.weight, bias: generations.bias, background: v.bitPattern)
        if key != wanted {
            key = nil
            guard buffer.reserve(Int(DLK_SPARSE_CHUNKS) * outFeatures) else { return nil }
            dlk_sparse_bases(weightT, Int64(inFeatures), Int64(outFeatures), bias, v, buffer.base, plainC)
            finish(buffer.base)
            key = wanted
        }
        return UnsafePointer(buffer.base)
    }

    /// The most frequent of 16 entries spread evenly over the batch (the first on ties): the
    /// value to compress around, when there is one (`dlk_likely_background`, which compares
    /// each pick with all 16 at once on AVX2).
    static func likelyBackground(_ x: UnsafePointer<Float>, count: Int, plainC: Bool = false) -> Float {
        likelyBackgroundAndMatches(x, count: count, plainC: plainC).value
    }

    /// `likelyBackground` and how many of the 16 picks equal it.
    static func likelyBackgroundAndMatches(_ x: UnsafePointer<Float>, count: Int,
                                           plainC: Bool = false) -> (value: Float, matches: Int) {
        var matches: Int32 = 0
        let v = dlk_likely_background(x, Int64(count), &matches, plainC ? 1 : 0)
        return (v, Int(matches))
    }

    /// dW^T (in x out) = x^T dy, and the bias gradient (dy summed over the batch) when the
    /// layer has a bias, for `x`, the batch of the last forward pass when it was sparse. Row
    /// j of dW^T is v times dy's column sums plus, over the batch rows where input j differs
    /// from v, that difference times the row of dy. False when the last forward pass was
    /// not sparse or a buffer cannot be allocated (the layer then takes its BLAS path).
    func weightGradient<T: DLScalar>(x: Tensor<T>, dy: Tensor<T>, weightTGrad: Tensor<T>, biasGrad: Tensor<T>?) -> Bool {
        let (i, o) = (inFeatures, outFeatures)
        guard rows > 0, T.self == Float.self, transposedBatch.reserve(rows * i), gradientBase.reserve(o),
              biasGrad != nil || columnSum.reserve(o) else { return false }
        let sums = biasGrad.map(floats) ?? columnSum.base
        Kernels.sumRows(floats(dy), sums, rows: rows, cols: o)
        var gradientBase: UnsafePointer<Float>? = nil
        if background != 0 {
            for c in 0..<o { self.gradientBase.base[c] = background * sums[c] }
            gradientBase = UnsafePointer(self.gradientBase.base)
        }
        dlk_sparse_weight_gradient(floats(x), Int64(rows), Int64(i), background, floats(dy), Int64(o), gradientBase,
                                   transposedBatch.base, floats(weightTGrad), plainC)
        return true
    }

    private var plainC: Int32 { forcePlainC ? 1 : 0 }
}

/// A matrix parameter (rows, cols) kept as its transpose (cols, rows): what the sparse
/// kernels read (`SparseInput`).
struct TransposedMatrix: StorageOrder {
    @_specialize(where S == Float, D == Float) @_specialize(where S == Float, D == Double)
    @_specialize(where S == Double, D == Float) @_specialize(where S == Double, D == Double)
    func read<S: DLScalar, D: DLScalar>(_ stored: UnsafePointer<S>, into out: UnsafeMutablePointer<D>, shape: [Int]) {
        let (rows, cols) = (shape[0], shape[1])
        for c in 0..<cols { for r in 0..<rows { out[r * cols + c] = D(stored[c * rows + r]) } }
    }

    @_specialize(where S == Float, D == Float) @_specialize(where S == Float, D == Double)
    @_specialize(where S == Double, D == Float) @_specialize(where S == Double, D == Double)
    func write<S: DLScalar, D: DLScalar>(_ values: UnsafePointer<S>, into stored: UnsafeMutablePointer<D>, shape: [Int]) {
        let (rows, cols) = (shape[0], shape[1])
        for r in 0..<rows { for c in 0..<cols { stored[c * rows + r] = D(values[r * cols + c]) } }
    }
}

/// A float32 tensor's elements (only called where T is Float: the sparse path's layer).
func floats<T>(_ t: Tensor<T>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(t.data).assumingMemoryBound(to: Float.self)
}
