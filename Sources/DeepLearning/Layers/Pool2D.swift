/// 2-D max and average pooling over NCHW images, each channel on its own.
///
///     x: (B, C, H, W) -> y: (B, C, OH, OW)
///     max_pool2d: y = max of each window (padding never wins)      caches the argmax of each window
///                 dx = dy sent to the argmax of its window, summed
///     avg_pool2d: y = sum of each window / (kh kw) (padding counts as zeros)
///                 dx = dy / (kh kw) spread over its window, summed
public final class Pool2D<T: DLScalar>: Layer {
    public enum Mode: Sendable { case max, average }

    public let mode: Mode
    public let channels: Int
    public let window: Window2D
    public var type: String { mode == .max ? "max_pool2d" : "avg_pool2d" }
    public var outputShape: [Int] { [channels, window.outHeight, window.outWidth] }

    private let y: Tensor<T>
    private let dx: Tensor<T>
    /// Max pooling: the input index (within its plane) of each output's maximum.
    private let argmax = Buffer<Int32>()
    /// Set by the model when batch norm and ReLU before this layer pool their own output
    /// (`BatchNorm.fusedPool`, `Model.fuseLayers`): tensors then pass through unchanged both
    /// ways.
    var absorbed = false

    public init(_ mode: Mode, channels: Int, window: Window2D) throws(DLError) {
        self.mode = mode
        self.channels = channels
        self.window = window
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        if absorbed { return x }
        let planes = x.shape[0] * channels
        try y.resize(batch: x.shape[0], sample: outputShape)
        switch mode {
        case .max:
            // The batch is the caller's: a refusal of this memory is an error, not a trap.
            guard argmax.reserve(y.count) else {
                throw DLError(.noMemory, "out of memory for the \(type) layer's \(y.count) window positions")
            }
            Kernels.maxPool2d(x.data, y.data, argmax: argmax.base, planes: planes, window)
        case .average:
            Kernels.avgPool2d(x.data, y.data, planes: planes, window)
        }
        return y
    }

    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        if absorbed { return x }
        let y = scratch.output
        let planes = x.shape[0] * channels
        try y.resize(batch: x.shape[0], sample: outputShape)
        switch mode {
        case .max:
            guard scratch.indices.reserve(y.count) else {
                throw DLError(.noMemory, "out of memory for the \(type) layer's \(y.count) window positions")
            }
            Kernels.maxPool2d(x.data, y.data, argmax: scratch.indices.base, planes: planes, window)
        case .average:
            Kernels.avgPool2d(x.data, y.data, planes: planes, window)
        }
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        if absorbed { return dy }
        guard dy.shape == y.shape else { throw .invalid("\(type): backward called before forward, or with another shape") }
        let planes = dy.shape[0] * channels
        try dx.resize(batch: dy.shape[0], sample: [channels, window.height, window.width])
        switch mode {
        case .max:
            Kernels.maxPool2dBackward(dy.data, argmax: argmax.base, dx.data, planes: planes, window)
        case .average:
            Kernels.avgPool2dBackward(dy.data, dx.data, planes: planes, window)
        }
        return dx
    }
}

/// The options both pooling layers take.
private func poolingOptions(_ what: String) -> [OptionSpec] {
    [
        OptionSpec("kernel_size", .positiveInts(count: 2), doc: "window height and width: k or [kh, kw]"),
        OptionSpec("stride", .positiveInts(count: 2), default: .int(0), doc: "step between windows; defaults to kernel_size"),
        OptionSpec("padding", .nonNegativeInts(count: 2), default: .int(0),
                   doc: "\(what) added on each side, at most half of kernel_size"),
    ]
}

/// A pooling layer from its spec; padding is limited to half the kernel (as in PyTorch), so
/// every window covers at least one input element.
private func makePool<T: DLScalar>(_ mode: Pool2D<T>.Mode, _ type: String, _ spec: ComponentSpec,
                                   _ context: LayerContext) throws(DLError) -> any Layer<T> {
    let (channels, window) = try Window2D.read(spec, context, type: type, strideIsKernel: true)
    guard 2 * window.padHeight <= window.kernelHeight, 2 * window.padWidth <= window.kernelWidth else {
        throw DLError(.spec, "\(context.describe(type)): padding [\(window.padHeight), \(window.padWidth)] is more than half of kernel_size [\(window.kernelHeight), \(window.kernelWidth)]")
    }
    return try Pool2D<T>(mode, channels: channels, window: window)
}

public enum MaxPool2DFactory: LayerFactory {
    public static let kind = ComponentKind("max_pool2d", options: poolingOptions("padding (never the maximum)"),
                                           doc: "maximum over each window of each channel")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try makePool(.max, "max_pool2d", spec, context)
    }
}

public enum AvgPool2DFactory: LayerFactory {
    public static let kind = ComponentKind("avg_pool2d", options: poolingOptions("zeros"),
                                           doc: "mean over each window of each channel, padding counted as zeros")
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try makePool(.average, "avg_pool2d", spec, context)
    }
}
