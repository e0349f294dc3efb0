/// Fully connected layer: y = x W^T + b.
///
///     x: (B, in)   weight: (out, in)   bias: (out)   ->   y: (B, out)
///     dW = dy^T x   (out, in)      db = sum over B of dy   (out)      dx = dy W   (B, in)
///
/// Caches a reference to x for backward (the model keeps x alive until then).
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
    private let y: Tensor<T>
    private let dx: Tensor<T>
    /// The sparse-input path (float32 only), which the model turns on for its first layer
    /// with parameters, the one that sees the input batch: see `SparseInput`.
    private(set) var sparseInput: SparseInput?
    /// Whether the last forward pass took the sparse path (backward then does too).
    private(set) var forwardWasSparse = false
    /// dy summed over the batch, when there is no bias to hold it (sparse path only).
    private var columnSum: Tensor<T>?

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

    /// Turns on the sparse-input path (the model does, for the layer that sees the input),
    /// which reads the weight as W^T: the weight is stored transposed from then on.
    func enableSparseInput() {
        guard T.self == Float.self else { return }
        sparseInput = SparseInput(inFeatures: inFeatures, outFeatures: outFeatures)
        weight.storeTransposed()
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        let batch = x.shape[0]
        try y.resize(batch: batch, sample: outputShape)
        self.x = x
        forwardWasSparse = false
        if let sparseInput, T.self == Float.self, weight.isTransposed {
            let xf = UnsafeRawPointer(x.data).assumingMemoryBound(to: Float.self)
            let yf = UnsafeMutableRawPointer(y.data).assumingMemoryBound(to: Float.self)
            let wt = UnsafeRawPointer(weight.value.data).assumingMemoryBound(to: Float.self)
            let b = bias.map { UnsafeRawPointer($0.value.data).assumingMemoryBound(to: Float.self) }
            if sparseInput.forward(xf, rows: batch, weightT: wt, bias: b, y: yf) {
                forwardWasSparse = true
                return y
            }
            // One sample: W^T read row by row in the same two halves (no BLAS threads).
            if batch == 1, sparseInput.forwardOne(xf, weightT: wt, bias: b, y: yf) { return y }
        }
        // W is (out, in), or (in, out) when stored transposed.
        let (w, wt) = (weight.value.data, weight.isTransposed)
        if batch == 1 {
            T.gemv(transA: wt, m: wt ? inFeatures : outFeatures, n: wt ? outFeatures : inFeatures, alpha: 1,
                   a: w, lda: wt ? outFeatures : inFeatures, x: x.data, beta: 0, y: y.data)
        } else {
            T.gemm(transA: false, transB: !wt, m: batch, n: outFeatures, k: inFeatures,
                   alpha: 1, a: x.data, lda: inFeatures, b: w, ldb: wt ? outFeatures : inFeatures,
                   beta: 0, c: y.data, ldc: outFeatures)
        }
        if let bias { Kernels.addRowVector(y.data, bias.value.data, rows: batch, cols: outFeatures) }
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard let x else { throw .invalid("linear: backward called before forward") }
        let batch = dy.shape[0]
        let (w, wt) = (weight.value.data, weight.isTransposed)
        var sparseDone = false
        if forwardWasSparse, let sparseInput { sparseDone = try sparseWeightGradient(sparseInput, x, dy) }
        if !sparseDone {
            if wt {  // dW^T = x^T dy   (in, out)
                T.gemm(transA: true, transB: false, m: inFeatures, n: outFeatures, k: batch,
                       alpha: 1, a: x.data, lda: inFeatures, b: dy.data, ldb: outFeatures,
                       beta: 0, c: weight.grad.data, ldc: outFeatures)
            } else {  // dW = dy^T x   (out, in)
                T.gemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: batch,
                       alpha: 1, a: dy.data, lda: outFeatures, b: x.data, ldb: inFeatures,
                       beta: 0, c: weight.grad.data, ldc: inFeatures)
            }
            if let bias { Kernels.sumRows(dy.data, bias.grad.data, rows: batch, cols: outFeatures) }
        }
        guard needInputGradient else { return nil }
        try dx.resize(batch: batch, sample: inputShape)
        T.gemm(transA: false, transB: wt, m: batch, n: inFeatures, k: outFeatures,
               alpha: 1, a: dy.data, lda: outFeatures, b: w, ldb: wt ? outFeatures : inFeatures,
               beta: 0, c: dx.data, ldc: inFeatures)
        return dx
    }

    /// The weight (and bias) gradient from the batch `forward` compressed; false when the
    /// sparse path could not get its buffers (the dense one then runs).
    private func sparseWeightGradient(_ sparse: SparseInput, _ x: Tensor<T>, _ dy: Tensor<T>) throws(DLError) -> Bool {
        let sums: Tensor<T>
        if let bias {
            sums = bias.grad
        } else if let columnSum {
            sums = columnSum
        } else {
            sums = try Tensor(shape: [outFeatures])
            columnSum = sums
        }
        Kernels.sumRows(dy.data, sums.data, rows: dy.shape[0], cols: outFeatures)
        let xf = UnsafeRawPointer(x.data).assumingMemoryBound(to: Float.self)
        let dyf = UnsafeRawPointer(dy.data).assumingMemoryBound(to: Float.self)
        let sf = UnsafeRawPointer(sums.data).assumingMemoryBound(to: Float.self)
        let dwt = UnsafeMutableRawPointer(weight.grad.data).assumingMemoryBound(to: Float.self)
        return sparse.weightGradient(x: xf, dy: dyf, columnSum: sf, intoTransposed: dwt)
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
        return layer
    }
}
