/// Batch normalisation (Ioffe & Szegedy), per feature of flat input and per channel of images.
///
///     x: (B, C, S), S = H W for images [C, H, W] and 1 for features [C]
///     training:   mean, var = the batch's, over B and S (var biased, divided by N = B S)
///                 running = (1 - momentum) running + momentum batch   (var unbiased: N / (N - 1)),
///                 folded in only once the model accepts the step
///     evaluation: mean, var = running_mean, running_var
///     xhat = (x - mean) / sqrt(var + eps)      y = weight xhat + bias      -> y: (B, C, S)
///     dweight = sum dy xhat   dbias = sum dy   (over B and S)
///     dx = weight / sqrt(var + eps) (dy - mean(dy) - xhat mean(dy xhat))   with batch statistics
///     dx = weight / sqrt(var + eps) dy                                      with running ones
///
/// Caches x and the statistics used (xhat is recomputed from them in backward).
public final class BatchNorm<T: DLScalar>: Layer {
    public let type = "batch_norm"
    public let outputShape: [Int]
    public let channels: Int
    public let spatial: Int
    public let momentum: Double
    public let eps: Double
    /// gamma and beta; nil when not affine.
    public let weight: Parameter<T>?
    public let bias: Parameter<T>?
    public let runningMean: Parameter<T>
    public let runningVar: Parameter<T>
    public var parameters: [Parameter<T>] { [weight, bias].compactMap { $0 } }
    public var buffers: [Parameter<T>] { [runningMean, runningVar] }
    /// Set by the model when a ReLU layer follows (`Model.fuseLayers`): the output is then
    /// max(0, y), and backward takes that ReLU's mask from it; the ReLU passes through.
    var fusedReLU = false
    /// Set by the model when that ReLU is followed by 2x2 max pooling (`Window2D.isPairwise`,
    /// the pooling's window): the output is then the pooled max(0, y), computed in the same
    /// pass (`Kernels.affineReLUMaxPool2x2`), and backward takes the pooled gradient; the
    /// pooling layer passes tensors through. Requires `fusedReLU`.
    var fusedPool: Window2D?
    /// With `fusedPool`: the plane index of each window's maximum in the last forward pass.
    private let argmax = Buffer<Int32>()

    private var x: Tensor<T>?
    private var batchStatistics = false
    // Per channel: the statistics of the last forward pass and their coefficients.
    private let mean: Tensor<T>, variance: Tensor<T>, invStd: Tensor<T>, scale: Tensor<T>, shift: Tensor<T>
    private let sumDy: Tensor<T>, sumDyXhat: Tensor<T>
    // The running statistics after the last training batch, folded in by
    // `commitTrainingStatistics` once the step is accepted.
    private let nextMean: Tensor<T>, nextVar: Tensor<T>
    private var statisticsPending = false
    private let y: Tensor<T>
    private let dx: Tensor<T>

    public init(shape: [Int], momentum: Double = 0.1, eps: Double = 1e-5, affine: Bool = true) throws(DLError) {
        self.outputShape = shape
        self.channels = shape[0]
        self.spatial = try checkedCount(Array(shape.dropFirst()), "batch_norm input")
        self.momentum = momentum
        self.eps = eps
        self.weight = affine ? try Parameter("weight", shape: [channels]) : nil
        self.bias = affine ? try Parameter("bias", shape: [channels]) : nil
        self.runningMean = try Parameter("running_mean", shape: [channels])
        self.runningVar = try Parameter("running_var", shape: [channels])
        if let weight { Kernels.fill(weight.value.data, channels, 1) }
        Kernels.fill(runningVar.value.data, channels, 1)
        (mean, variance, invStd, scale, shift) = (try Tensor(shape: [channels]), try Tensor(shape: [channels]),
                                                  try Tensor(shape: [channels]), try Tensor(shape: [channels]),
                                                  try Tensor(shape: [channels]))
        (sumDy, sumDyXhat) = (try Tensor(shape: [channels]), try Tensor(shape: [channels]))
        (nextMean, nextVar) = (try Tensor(shape: [channels]), try Tensor(shape: [channels]))
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        let batch = x.shape[0], n = batch * spatial
        if training {
            guard n > 1 else {
                throw .invalid("batch_norm needs more than one value per channel to train, got a batch of 1 sample of shape \(outputShape)")
            }
            Kernels.channelMeanVariance(x.data, mean: mean.data, variance: variance.data, batch: batch, channels: channels,
                                        spatial: spatial, shift: runningMean.value.data)
            nextMean.copy(from: runningMean.value)
            nextVar.copy(from: runningVar.value)
            Kernels.movingAverage(nextMean.data, mean.data, channels, momentum: T(momentum), factor: 1)
            Kernels.movingAverage(nextVar.data, variance.data, channels, momentum: T(momentum), factor: T(n) / T(n - 1))
            statisticsPending = false
            guard Kernels.allFinite(nextMean.data, channels), Kernels.allFinite(nextVar.data, channels) else {
                throw DLError(.numeric, "batch_norm (\(channels) channels): this batch would make the running mean or variance NaN or infinite (its values are too large); nothing was changed")
            }
            statisticsPending = true
        } else {
            mean.copy(from: runningMean.value)
            variance.copy(from: runningVar.value)
        }
        Kernels.batchNormCoefficients(mean: mean.data, variance: variance.data, gamma: weight?.value.data, beta: bias?.value.data,
                                      eps: T(eps), invStd: invStd.data, scale: scale.data, shift: shift.data, channels: channels)
        try normalize(x, scale, shift, into: y, argmax: argmax)
        self.x = x
        batchStatistics = training
        return y
    }

    /// The running statistics the last training batch proposes, before they are committed:
    /// data-parallel training replaces them with the ranks' mean (Distributed.swift).
    var pendingStatistics: (mean: Tensor<T>, variance: Tensor<T>) { (nextMean, nextVar) }

    /// Marks `pendingStatistics` as set for the next commit (a rank that had no samples).
    func markStatisticsPending() { statisticsPending = true }

    public func commitTrainingStatistics() {
        guard statisticsPending else { return }
        runningMean.value.copy(from: nextMean)
        runningVar.value.copy(from: nextVar)
        statisticsPending = false
    }

    /// Evaluation with the running statistics, the coefficients in `scratch` (0: y,
    /// 1-3: invStd, scale, shift per channel).
    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        let y = scratch.output, invStd = try scratch.tensor(1), scale = try scratch.tensor(2), shift = try scratch.tensor(3)
        for t in [invStd, scale, shift] { try t.resize([channels]) }
        Kernels.batchNormCoefficients(mean: runningMean.value.data, variance: runningVar.value.data, gamma: weight?.value.data,
                                      beta: bias?.value.data, eps: T(eps), invStd: invStd.data, scale: scale.data,
                                      shift: shift.data, channels: channels)
        try normalize(x, scale, shift, into: y, argmax: nil)
        return y
    }

    /// y = x scale + shift per channel (training's coefficients or evaluation's, in its
    /// scratch), then the fused ReLU, and the fused pooling, which records each window's
    /// maximum in `argmax` when given.
    private func normalize(_ x: Tensor<T>, _ scale: Tensor<T>, _ shift: Tensor<T>, into y: Tensor<T>,
                           argmax: Buffer<Int32>?) throws(DLError) {
        let batch = x.shape[0]
        guard let window = fusedPool else {
            try y.resize(x.shape)
            Kernels.channelAffine(x.data, y.data, scale: scale.data, shift: shift.data, batch: batch, channels: channels,
                                  spatial: spatial, relu: fusedReLU)
            return
        }
        try y.resize(batch: batch, sample: [channels, window.outHeight, window.outWidth])
        // The batch is the caller's: a refusal of this memory is an error, not a trap.
        guard argmax?.reserve(y.count) ?? true else {
            throw DLError(.noMemory, "out of memory for batch_norm's \(y.count) pooling window positions")
        }
        Kernels.affineReLUMaxPool2x2(x.data, y.data, argmax: argmax?.base, scale: scale.data, shift: shift.data,
                                     batch: batch, channels: channels, window)
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard let x, dy.shape == y.shape else { throw .invalid("batch_norm: backward called before forward, or with another shape") }
        if needInputGradient { try dx.resize(x.shape) }
        if let window = fusedPool {
            Kernels.batchNormReLUMaxPool2x2Backward(x.data, dy.data, out: y.data, argmax: argmax.base,
                                                    needInputGradient ? dx.data : nil, mean: mean.data, invStd: invStd.data,
                                                    scale: scale.data, sumDy: sumDy.data, sumDyXhat: sumDyXhat.data,
                                                    batchStatistics: batchStatistics, batch: dy.shape[0], channels: channels,
                                                    window)
        } else {
            Kernels.batchNormBackward(x.data, dy.data, needInputGradient ? dx.data : nil, mean: mean.data, invStd: invStd.data,
                                      scale: scale.data, sumDy: sumDy.data, sumDyXhat: sumDyXhat.data,
                                      batchStatistics: batchStatistics, batch: dy.shape[0], channels: channels, spatial: spatial,
                                      mask: fusedReLU ? y.data : nil)
        }
        weight?.grad.copy(from: sumDyXhat)
        bias?.grad.copy(from: sumDy)
        return needInputGradient ? dx : nil
    }
}

public enum BatchNormFactory: LayerFactory {
    public static let kind = ComponentKind("batch_norm", options: [
        OptionSpec("momentum", .number(0...1), default: .double(0.1),
                   doc: "weight of the batch in the running statistics (PyTorch's convention)"),
        OptionSpec("eps", .number(1e-12...1), default: .double(1e-5), doc: "added to the variance"),
        OptionSpec("affine", .bool, default: .bool(true), doc: "whether to learn a scale (weight) and shift (bias) per channel"),
    ], doc: "batch normalisation per feature of flat input, per channel of [C, H, W] images")

    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        let affine = try spec.bool("affine")
        let channels = context.inputShape[0]
        try context.reserve(affine ? 2 * channels : 0, context.describe("batch_norm"))
        return try BatchNorm<T>(shape: context.inputShape, momentum: try spec.double("momentum"),
                                eps: try spec.double("eps"), affine: affine)
    }
}
