import CDeepLearningKernels

/// The geometry of a 2-D sliding window over one H x W plane: kernel, stride and zero
/// padding, and the OH x OW plane of window positions it gives. Shared by `conv2d`, the
/// pooling layers and their kernels.
///
///     OH = (H + 2 padHeight - kernelHeight) / strideHeight + 1     (OW likewise)
///     window (oy, ox), tap (i, j) reads input row oy * strideHeight - padHeight + i,
///                                   column ox * strideWidth - padWidth + j
public struct Window2D: Sendable, Equatable {
    public let height: Int, width: Int
    public let kernelHeight: Int, kernelWidth: Int
    public let strideHeight: Int, strideWidth: Int
    public let padHeight: Int, padWidth: Int
    public let outHeight: Int, outWidth: Int

    /// A window; `outHeight` or `outWidth` is zero or negative when the kernel does not fit.
    public init(height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) {
        self.height = height
        self.width = width
        (kernelHeight, kernelWidth) = kernel
        (strideHeight, strideWidth) = stride
        (padHeight, padWidth) = padding
        outHeight = Window2D.positions(height, kernelHeight, strideHeight, padHeight)
        outWidth = Window2D.positions(width, kernelWidth, strideWidth, padWidth)
    }

    private static func positions(_ size: Int, _ kernel: Int, _ stride: Int, _ pad: Int) -> Int {
        let span = size + 2 * pad - kernel
        return span < 0 ? 0 : span / stride + 1
    }

    public var inputPlane: Int { height * width }
    public var outputPlane: Int { outHeight * outWidth }
    public var kernelArea: Int { kernelHeight * kernelWidth }
    /// 2x2 windows with stride 2 and no padding, every one inside the input: the common
    /// pooling, which has a loop of its own.
    var isPairwise: Bool {
        kernelHeight == 2 && kernelWidth == 2 && strideHeight == 2 && strideWidth == 2 && padHeight == 0 && padWidth == 0
    }

    /// The window rows oy whose tap row i falls inside the input (the others read padding).
    @inline(__always)
    func rows(tap i: Int) -> Range<Int> { Window2D.inside(i - padHeight, strideHeight, height, outHeight) }

    /// The window columns ox whose tap column j falls inside the input.
    @inline(__always)
    func columns(tap j: Int) -> Range<Int> { Window2D.inside(j - padWidth, strideWidth, width, outWidth) }

    /// The input rows that window row oy covers (padding left out).
    @inline(__always)
    func inputRows(window oy: Int) -> Range<Int> {
        let top = oy * strideHeight - padHeight
        return Swift.max(0, top)..<Swift.min(height, top + kernelHeight)
    }

    /// The input columns that window column ox covers (padding left out).
    @inline(__always)
    func inputColumns(window ox: Int) -> Range<Int> {
        let left = ox * strideWidth - padWidth
        return Swift.max(0, left)..<Swift.min(width, left + kernelWidth)
    }

    /// The positions o in 0..<count with 0 <= o * stride + first < size.
    @inline(__always)
    private static func inside(_ first: Int, _ stride: Int, _ size: Int, _ count: Int) -> Range<Int> {
        let lo = Swift.min(count, first >= 0 ? 0 : (stride - 1 - first) / stride)
        let last = size - 1 - first
        let hi = last < 0 ? 0 : Swift.min(count, last / stride + 1)
        return lo..<Swift.max(lo, hi)
    }
}

extension Window2D {
    /// The window of a conv2d or pooling layer: its spec's `kernel_size`, `stride` and
    /// `padding`, over the layer's input [channels, height, width]. A stride of 0 or none
    /// means 1, or the kernel size when `strideIsKernel` (pooling). Refuses a flat input and
    /// a kernel that does not fit, naming the layer.
    static func read(_ spec: ComponentSpec, _ context: LayerContext, type: String,
                     strideIsKernel: Bool = false) throws(DLError) -> (channels: Int, window: Window2D) {
        let me = context.describe(type)
        let shape = context.inputShape
        guard shape.count == 3 else {
            let source = context.index == 0 ? "the model's input has shape \(shape)" : "layers[\(context.index - 1)] outputs shape \(shape)"
            throw DLError(.spec, "\(me) needs images of shape [channels, height, width], but \(source); give the input as \"input\": {\"shape\": [C, H, W]} or put a reshape layer before it")
        }
        // One integer means the same along both axes; 0 (stride's default) means the fallback.
        func pair(_ name: String, _ fallback: (Int, Int)) throws(DLError) -> (Int, Int) {
            let v = try spec.ints(name)
            if v.count == 2 { return (v[0], v[1]) }
            if v.count == 1 && v[0] > 0 { return (v[0], v[0]) }
            return fallback
        }
        let kernel = try pair("kernel_size", (1, 1))
        let stride = try pair("stride", strideIsKernel ? kernel : (1, 1))
        let padding = try pair("padding", (0, 0))
        let window = Window2D(height: shape[1], width: shape[2], kernel: kernel, stride: stride, padding: padding)
        guard window.outHeight > 0, window.outWidth > 0 else {
            throw DLError(.spec, "\(me): kernel_size [\(kernel.0), \(kernel.1)] does not fit the \(shape[1]) x \(shape[2]) input with padding [\(padding.0), \(padding.1)]; the padded input must be at least as large as the kernel")
        }
        return (shape[0], window)
    }
}

extension Window2D {
    /// The geometry as the C kernels take it (`dlk_im2col_f32`, `dlk_col2im_f32`).
    var geometry: dlk_window {
        dlk_window(height: Int64(height), width: Int64(width), kernel_h: Int64(kernelHeight), kernel_w: Int64(kernelWidth),
                   stride_h: Int64(strideHeight), stride_w: Int64(strideWidth), pad_h: Int64(padHeight),
                   pad_w: Int64(padWidth), out_h: Int64(outHeight), out_w: Int64(outWidth))
    }
}
