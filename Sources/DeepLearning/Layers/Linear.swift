import CDeepLearningKernels

/// Fully connected layer: y = x W^T + b.
///
///     x: (B, in)   weight: (out, in)   bias: (out)   ->   y: (B, out)
///     dW = dy^T x   (out, in)      db = sum over B of dy   (out)      dx = dy W   (B, in)
///
/// Caches a reference to x for backward (the model keeps x alive until then).
///
/// Products go through BLAS, except in the float32 layer that sees the model's input: it
/// keeps its weight as W^T and tries `SparseInput` first, which handles single samples and
/// batches that are mostly one value, and multiplies the rest with W^T through the
/// library's unpacked kernel where the CPU has AVX2/FMA and the layer at most 128 outputs
/// (`Kernels.unpackedGemm`, gemm.c), else through BLAS.
public final class Linear<T: DLScalar>: Layer {
    public let type = "linear"
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: Parameter<T>
    public let bias: Parameter<T>?
    public let outputShape: [Int]
    private let inputShape: [Int]
    public var parameters: [Parameter<T>] { bias.map { [weight, $0] } ?? [weight] }

    private var x: Tensor<T>?
    /// The partial products of `chunkedForward`.
    private let partial = Buffer<T>()
    /// W^T for training's `dense` (`transposedWeight`); evaluation keeps its own in its scratch.
    private let weightCopy = WeightCopy<T>()
    private let y: Tensor<T>
    private let dx: Tensor<T>
    /// The sparse-input path, when the layer has it (`enableSparseInput`).
    /// Set once, before any use (no run-time exclusivity checks on its reads).
    @exclusivity(unchecked) private(set) var sparseInput: SparseInput?
    /// The elementwise activation of the layer after this one, which `infer` applies to
    /// its output in place (`Model.fuseLayers`; the model's evaluation then passes over that
    /// layer): the same function on the same values, without a layer's bookkeeping and a
    /// pass over the outputs. Training's `forward` leaves it to the next layer. Set once,
    /// when the model is built.
    @exclusivity(unchecked) var inferenceActivation: (any ActivationFunction)?

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true) throws(DLError) {
        self.inFeatures = inFeatures
        self.outputShape = [outFeatures]
        self.inputShape = [inFeatures]
        self.outFeatures = outFeatures
        self.weight = try Parameter("weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? try Parameter("bias", shape: [outFeatures]) : nil
        self.y = try Tensor(shape: [0, outFeatures])
        self.dx = try Tensor(shape: [0, inFeatures])
    }

    /// Turns on the sparse-input path (float32 only), for the layer that sees the model's
    /// input; the weight is stored as W^T from then on.
    func enableSparseInput() {
        guard T.self == Float.self, sparseInput == nil else { return }
        sparseInput = SparseInput(inFeatures: inFeatures, outFeatures: outFeatures)
        weight.store(in: TransposedMatrix())
    }

    /// Whether the last forward pass took the sparse path (backward then does too).
    var forwardWasSparse: Bool { sparseInput?.lastForwardWasSparse ?? false }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        try y.resize(batch: x.shape[0], sample: outputShape)
        self.x = x
        if sparseInput?.forward(x, weightT: weight.value, bias: bias?.value, y: y) == true { return y }
        if weightIsTransposed, x.shape[0] > 1, chunkedForward(x, y) { return y }
        dense(x, y, weightCopy)
        return y
    }

    /// Specialized for float32: through `any Layer<T>` the generic body looked up the
    /// metadata of its generic types (`Parameter<T>`, optionals of them) in the runtime's
    /// caches on every call, a third of a small layer's single sample.
    @_specialize(where T == Float)
    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        let y = scratch.output
        try y.resize(batch: x.shape[0], sample: outputShape)
        if let sparseInput, sparseInput.multiply(x, weightT: weight.value, bias: bias?.value, y: y, workspace: scratch.sparse,
                                                 generations: (weight.generation, bias?.generation ?? 0)).done {
            return activated(y)
        }
        dense(x, y, scratch.weightCopy)
        return activated(y)
    }

    /// y after `inferenceActivation`, in place.
    private func activated(_ y: Tensor<T>) -> Tensor<T> {
        inferenceActivation?.apply(y.data, y.data, y.count)
        return y
    }

    /// `infer` on a batch of raw input, before the model's preprocessing x * multiplier +
    /// offset, for the layer that keeps W^T (the model's input), which saves the pass that
    /// writes the preprocessed batch and reads it again:
    /// - a batch that looks sparse is compressed from the raw values, each mapped as it is
    ///   read (`SparseInput.multiplyRaw`): the same bits as the preprocessed batch through
    ///   `infer`;
    /// - another (or one that turns out too dense) is one product from the caller's memory
    ///   (the unpacked kernel, else BLAS), y = multiplier (x W^T) + (b + offset rowsum(W))
    ///   (`SparseInput.foldedBase`):
    ///   the same sums as `infer` to float32 rounding, as long as the offset is not large
    ///   against the preprocessed values (the model's `maxFoldedOffset`);
    /// - a single sample takes the same two ways (`SparseInput.predictOneRaw`).
    ///
    /// Refuses NaN and infinity in x, from the outputs: a NaN or an infinity in row r of x
    /// makes every output of row r NaN or infinite (NaN times anything, and infinity times 0,
    /// are NaN; the multiplier is a finite nonzero number), so x is read again only when the
    /// outputs are not all finite (unless `checked`, when the caller has read it). Outputs
    /// that are not finite from finite x (raw values so large that their sum overflows
    /// before the multiplier scales it down) give nil. Nil, having written nothing the
    /// caller sees, also when the layer has no sparse path or a buffer cannot be had: the
    /// caller then preprocesses and calls `infer`.
    func inferFolded(raw x: UnsafePointer<T>, rows: Int, multiplier: T, offset: T, checked: Bool,
                     scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T>? {
        guard let sparseInput, rows > 0, T.self == Float.self else { return nil }
        let workspace = scratch.sparse
        workspace.lastWasFolded = false
        let y = scratch.output
        try y.resize(batch: rows, sample: outputShape)
        let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
        let (wf, bf, yf) = (floats(weight.value), bias.map { floats($0.value) }, floats(y))
        let generations = (weight.generation, bias?.generation ?? 0)
        if rows == 1 {
            guard sparseInput.predictOneRaw(xf, multiplier: Float(multiplier), offset: Float(offset), weightT: wf,
                                            bias: bf, y: yf, generations: generations, workspace: workspace),
                  try checkedOutputs(y, of: x, rows: 1, checked: checked) != nil else { return nil }
            workspace.lastWasFolded = true
            workspace.lastFoldedWasSparse = workspace.singleWasSparse
            return activated(y)
        }
        let sparse = sparseInput.multiplyRaw(xf, batch: rows, multiplier: Float(multiplier), offset: Float(offset),
                                             weightT: wf, bias: bf, y: yf, workspace: workspace)
        var base: UnsafePointer<Float>? = nil
        if !sparse {
            base = sparseInput.foldedBase(weightT: wf, bias: bf, offset: Float(offset), generations: generations,
                                          workspace: workspace)
            guard base != nil else { return nil }
            if !Kernels.unpackedGemm(m: rows, n: outFeatures, k: inFeatures, alpha: multiplier, a: x, lda: inFeatures,
                                     b: weight.value.data, ldb: outFeatures, c: y.data, ldc: outFeatures) {
                T.gemm(transA: false, transB: false, m: rows, n: outFeatures, k: inFeatures, alpha: multiplier, a: x,
                       lda: inFeatures, b: weight.value.data, ldb: outFeatures, beta: 0, c: y.data, ldc: outFeatures)
            }
        }
        guard try checkedOutputs(y, of: x, rows: rows, checked: checked) != nil else { return nil }
        if let base { Kernels.addRowVector(y.data, UnsafeRawPointer(base).assumingMemoryBound(to: T.self), rows: rows, cols: outFeatures) }
        workspace.lastWasFolded = true
        workspace.lastFoldedWasSparse = sparse
        return activated(y)
    }

    /// `inferFolded`'s check of its outputs y for raw input x: y when all finite; else a
    /// refusal when x holds a NaN or an infinity (not read when `checked`), or nil (finite
    /// values that overflowed).
    private func checkedOutputs(_ y: Tensor<T>, of x: UnsafePointer<T>, rows: Int, checked: Bool) throws(DLError) -> Tensor<T>? {
        if Kernels.allFinite(y.data, rows * outFeatures) { return y }
        guard checked || Kernels.allFinite(x, rows * inFeatures) else {
            throw DLError(.numeric, "the input contains NaN or infinite values")
        }
        return nil
    }

    /// Training's dense forward of the layer that keeps W^T: y = x W^T + b as the sparse
    /// path cuts it, chunk h's rows of W^T (its inputs) times x's columns, each from zero,
    /// added in chunk order (`dlk_chunk_start`: the same cut for any thread count). Each
    /// chunk is one product (the unpacked kernel, else OpenBLAS) on its own thread, so on
    /// two cores each core reads the half of W^T that it updated in the last step (the
    /// weight gradient and the optimizer split W^T's rows the same way) instead of the
    /// other core's. False when the partial products' buffer cannot be had (the caller
    /// then takes `dense`).
    private func chunkedForward(_ x: Tensor<T>, _ y: Tensor<T>) -> Bool {
        let batch = x.shape[0], size = batch * outFeatures
        guard partial.reserve((Int(DLK_SPARSE_CHUNKS) - 1) * size) else { return false }
        let w = weight.value.data, partial = partial.base
        let chunks = forEachChunk(batch) { h, lower, upper in
            let (a, b, c) = (x.data + lower, w + lower * outFeatures, h == 0 ? y.data : partial + (h - 1) * size)
            if !Kernels.unpackedGemm(m: batch, n: outFeatures, k: upper - lower, alpha: 1, a: a, lda: inFeatures, b: b,
                                     ldb: outFeatures, c: c, ldc: outFeatures) {
                T.blasGemm(transA: false, transB: false, m: batch, n: outFeatures, k: upper - lower, alpha: 1, a: a,
                           lda: inFeatures, b: b, ldb: outFeatures, beta: 0, c: c, ldc: outFeatures)
            }
        }
        if T.self == Float.self, chunks == Int(DLK_SPARSE_CHUNKS) {   // the partials and the bias in one pass, in C
            dlk_sum_chunks_f32(floats(y), Kernels.asFloats(partial), bias.map { Kernels.asFloats($0.value.data) },
                               Int64(batch), Int64(outFeatures), 0)
            return true
        }
        for h in 1..<chunks { Kernels.add(partial + (h - 1) * size, into: y.data, size) }
        if let bias { Kernels.addRowVector(y.data, bias.value.data, rows: batch, cols: outFeatures) }
        return true
    }

    /// Runs `body(h, first input, end)` for each chunk h of W^T's rows (the inputs), cut at
    /// the sparse path's boundaries (`dlk_chunk_start`), the chunks on the kernel threads,
    /// all inside the BLAS guard (`withBLAS`). A product of fewer than `GemmBlocks.minWork`
    /// multiply-adds is one chunk. The cut depends on the shape only. Returns the number of
    /// chunks.
    @discardableResult
    private func forEachChunk(_ batch: Int, _ body: (Int, Int, Int) -> Void) -> Int {
        let chunks = batch * outFeatures * inFeatures >= GemmBlocks.minWork ? Int(DLK_SPARSE_CHUNKS) : 1
        withBLAS {
            guard chunks > 1 else { return body(0, 0, inFeatures) }
            Kernels.parallelFor(chunks) { range in
                for h in range {
                    body(h, Int(dlk_chunk_start(Int64(inFeatures), Int64(h))), Int(dlk_chunk_start(Int64(inFeatures), Int64(h + 1))))
                }
            }
        }
        return chunks
    }

    /// y = x W^T + b: through the library's unpacked kernel where `Kernels.unpackedGemm`
    /// takes the product (from W^T: kept by the layer, or the transposed copy in `copy`, made
    /// once for each version of W), else through BLAS.
    private func dense(_ x: Tensor<T>, _ y: Tensor<T>, _ copy: WeightCopy<T>) {
        let batch = x.shape[0]
        let w = weight.value.data
        if batch == 1 {
            if T.self == Float.self, !weightIsTransposed {   // W x + b in one pass
                dlk_matrix_vector_affine_f32(Kernels.asFloats(w), Int64(outFeatures), Int64(inFeatures),
                                             Int64(inFeatures), Kernels.asFloats(x.data), 1,
                                             bias.map { Kernels.asFloats($0.value.data) }, floats(y), 0)
                return
            }
            let (m, n) = weightIsTransposed ? (inFeatures, outFeatures) : (outFeatures, inFeatures)
            T.gemv(transA: weightIsTransposed, m: m, n: n, alpha: 1, a: w, lda: n, x: x.data, beta: 0, y: y.data)
        } else if !multipliedByKernel(x, y, copy) {
            T.gemm(transA: false, transB: !weightIsTransposed, m: batch, n: outFeatures, k: inFeatures,
                   alpha: 1, a: x.data, lda: inFeatures, b: w, ldb: weightLeadingDimension,
                   beta: 0, c: y.data, ldc: outFeatures)
        }
        if let bias { Kernels.addRowVector(y.data, bias.value.data, rows: batch, cols: outFeatures) }
    }

    /// y = x W^T through the library's kernel (`Kernels.unpackedGemm`) from W^T, kept by the
    /// layer or transposed into `copy`; false, with nothing written, when the kernel does not
    /// take the product.
    private func multipliedByKernel(_ x: Tensor<T>, _ y: Tensor<T>, _ copy: WeightCopy<T>) -> Bool {
        let batch = x.shape[0]
        guard let wT = weightIsTransposed ? UnsafePointer(weight.value.data) : transposedWeight(copy, batch: batch) else {
            return false
        }
        return Kernels.unpackedGemm(m: batch, n: outFeatures, k: inFeatures, alpha: 1, a: x.data, lda: inFeatures, b: wT,
                                    ldb: outFeatures, c: y.data, ldc: outFeatures)
    }

    /// W^T (in, out) in `copy` for `dense`'s product of `batch` rows, transposed from W when W
    /// has changed since (its generation); nil when the library's kernel would not take the
    /// product (float64, no AVX2, a shape OpenBLAS wins) or the copy cannot be had. The copy
    /// costs a pass over W per version: once per training step, once in evaluation.
    private func transposedWeight(_ copy: WeightCopy<T>, batch: Int) -> UnsafePointer<T>? {
        guard Kernels.hasUnpackedGemm(T.self),
              dlk_gemm_parallel_takes(0, Int64(batch), Int64(outFeatures), Int64(inFeatures)) != 0 else { return nil }
        return copy.transposed(weight.value.data, rows: outFeatures, cols: inFeatures, generation: weight.generation)
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard let x else { throw .invalid("linear: backward called before forward") }
        let batch = dy.shape[0]
        let sparseDone = sparseInput?.weightGradient(x: x, dy: dy, weightTGrad: weight.grad, biasGrad: bias?.grad) == true
        if !sparseDone {
            if weightIsTransposed {  // dW^T = x^T dy   (in, out), its rows cut as the forward cuts W^T
                forEachChunk(batch) { _, lower, upper in
                    let (a, c) = (x.data + lower, weight.grad.data + lower * outFeatures)
                    if !Kernels.unpackedGemm(transA: true, m: upper - lower, n: outFeatures, k: batch, alpha: 1, a: a,
                                             lda: inFeatures, b: dy.data, ldb: outFeatures, c: c, ldc: outFeatures) {
                        T.blasGemm(transA: true, transB: false, m: upper - lower, n: outFeatures, k: batch, alpha: 1,
                                   a: a, lda: inFeatures, b: dy.data, ldb: outFeatures, beta: 0, c: c, ldc: outFeatures)
                    }
                }
            } else if !Kernels.unpackedGemm(transA: true, m: outFeatures, n: inFeatures, k: batch, alpha: 1, a: dy.data,
                                            lda: outFeatures, b: x.data, ldb: inFeatures, c: weight.grad.data,
                                            ldc: inFeatures) {  // dW = dy^T x   (out, in)
                T.gemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: batch,
                       alpha: 1, a: dy.data, lda: outFeatures, b: x.data, ldb: inFeatures,
                       beta: 0, c: weight.grad.data, ldc: inFeatures)
            }
            if let bias { Kernels.sumRows(dy.data, bias.grad.data, rows: batch, cols: outFeatures) }
        }
        guard needInputGradient else { return nil }
        try dx.resize(batch: batch, sample: inputShape)
        if weightIsTransposed
            || !Kernels.unpackedGemm(m: batch, n: inFeatures, k: outFeatures, alpha: 1, a: dy.data, lda: outFeatures,
                                     b: weight.value.data, ldb: inFeatures, c: dx.data, ldc: inFeatures) {  // dx = dy W
            T.gemm(transA: false, transB: weightIsTransposed, m: batch, n: inFeatures, k: outFeatures,
                   alpha: 1, a: dy.data, lda: outFeatures, b: weight.value.data, ldb: weightLeadingDimension,
                   beta: 0, c: dx.data, ldc: inFeatures)
        }
        return dx
    }

    /// The weight is in memory as W (out, in), or as W^T (in, out) with the sparse path.
    private var weightIsTransposed: Bool { sparseInput != nil }
    private var weightLeadingDimension: Int { weightIsTransposed ? outFeatures : inFeatures }
}

/// A transposed copy of a weight, kept while the weight's generation stays the one it was
/// made from: a linear layer's W^T for batches (`Linear.transposedWeight`), and the sparse
/// path's W for single dense samples (`SparseInput.keptWeight`).
final class WeightCopy<T: DLScalar> {
    private let buffer = Buffer<T>()
    /// The generation the copy was made from (nil before the first, or after a failure). Read
    /// on every call that uses the copy: no run-time exclusivity checks.
    @exclusivity(unchecked) private(set) var key: UInt64?

    /// src (rows x cols) transposed, made again only when `generation` is not the copy's;
    /// nil when its buffer cannot be had.
    func transposed(_ src: UnsafePointer<T>, rows: Int, cols: Int, generation: UInt64) -> UnsafePointer<T>? {
        if key != generation {
            key = nil
            guard buffer.reserve(rows * cols) else { return nil }
            Kernels.transpose(src, rows: rows, cols: cols, into: buffer.base)
            key = generation
        }
        return UnsafePointer(buffer.base)
    }
}

public enum LinearFactory: LayerFactory {
    public static let kind = ComponentKind("linear", options: [
        OptionSpec("units", .positiveInt, doc: "number of outputs"),
        OptionSpec("in_features", .positiveInt, default: .int(0),
                   doc: "number of inputs; optional, checked against the previous layer's output"),
        OptionSpec("bias", .bool, default: .bool(true), doc: "whether to add a bias"),
        OptionSpec("init", .choice(Initializer.allCases.map(\.rawValue)), default: .string(""),
                   doc: "weight initializer; defaults to the spec's \"init\""),
    ], doc: "fully connected layer y = x W^T + b, weight (units, in_features)")

    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        let me = context.describe("linear")
        guard context.inputShape.count == 1 else {
            throw DLError(.spec, "\(me) needs flat input, but its input has shape \(context.inputShape); give the input as \"input\": {\"size\": \(context.inputShape.reduce(1, *))}")
        }
        let inFeatures = context.inputShape[0]
        let units = try spec.int("units"), declared = try spec.int("in_features")
        if declared != 0, declared != inFeatures {
            let previous = context.index == 0 ? "the input has size" : "layers[\(context.index - 1)] outputs"
            throw DLError(.spec, "\(spec.path).in_features is \(declared) but \(previous) \(inFeatures)")
        }
        let weights = try checkedProduct(units, inFeatures, "\(me) weight (\(units), \(inFeatures))")
        try context.reserve(weights + units, me)
        let layer = try Linear<T>(inFeatures: inFeatures, outFeatures: units, bias: try spec.bool("bias"))
        let initializer = Initializer(rawValue: try spec.string("init")) ?? context.defaultInitializer
        initializer.fill(layer.weight.value, fanIn: inFeatures, fanOut: units, rng: &context.rng)
        // The model's input is often mostly one value (image backgrounds, one-hot codes).
        if context.seesModelInput { layer.enableSparseInput() }
        return layer
    }
}
