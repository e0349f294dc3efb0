/// An elementwise activation: its formula, its derivative, what backward reads, and its
/// spec entry, in one type.
///
/// Adding one is a file with a type conforming to this protocol plus one line in
/// `LayerRegistry.factories`; `Activation` makes the layer and the spec parser, the
/// checkpoints, the C ABI (`dl_layer_from_json`) and the Python classes take it from there.
///
/// `forward` and `backward` run a `Kernels.map` over raw buffers with the formula as its
/// closure, and each carries `@_specialize(where T == Float) @_specialize(where T == Double)`:
/// layers are called through `any Layer<T>`, where T is unknown at compile time, and the
/// attribute makes the generic entry point jump to a body compiled for that type, in which
/// the loop and the formula are one inlined piece of code.
public protocol ActivationFunction: LayerFactory {
    /// Which tensor `backward` reads besides dL/dy: the input x or the output y.
    static var cache: ActivationCache { get }
    /// Reads the options `kind` declares from a validated spec.
    init(_ spec: ComponentSpec) throws(DLError)
    /// y = f(x) over n elements.
    func forward<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int)
    /// dx = dy * f'(x) over n elements; `c` is x or y, as `cache` says.
    func backward<T: DLScalar>(_ c: UnsafePointer<T>, _ dy: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ n: Int)
}

/// What an activation keeps from forward for backward.
public enum ActivationCache: Sendable {
    /// The input x (when f' is cheapest from x: relu, gelu, ...).
    case input
    /// The output y (when f' is a function of y: sigmoid's y (1 - y), tanh's 1 - y^2).
    case output
}

extension ActivationFunction {
    public static func make<T: DLScalar>(_ spec: ComponentSpec, _ context: inout LayerContext) throws(DLError) -> any Layer<T> {
        try Activation<Self, T>(try Self(spec), shape: context.inputShape)
    }

    /// The activation with these options and the declared defaults for the others
    /// (`GELU(["approximate": .string("tanh")])`, `ReLU()`).
    public init(_ options: [String: SpecValue] = [:]) throws(DLError) {
        try self.init(Self.kind.spec(options))
    }

    /// y = F(x) over n elements (y may be x), contiguous ranges on the kernel threads (a
    /// CNN's feature maps are megabytes: done on one thread, the other core waited).
    func apply<T: DLScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        Kernels.parallelFor(n, cost: 1) { r in forward(x + r.lowerBound, y + r.lowerBound, r.count) }
    }
}

/// An activation layer seen without its function's type, for `Model.fuseLayers`.
protocol ActivationLayer: AnyObject {
    /// The function the layer applies.
    var activation: any ActivationFunction { get }
}

/// The layer of any activation F: y = F(x) elementwise, any shape.
///
///     x: (B, ...) -> y: (B, ...)        caches x or y (F.cache) for backward
public final class Activation<F: ActivationFunction, T: DLScalar>: Layer {
    public let function: F
    public let outputShape: [Int]
    public var type: String { F.kind.type }
    public var acceptsAnyShape: Bool { true }

    private var x: Tensor<T>?
    private let y: Tensor<T>
    private let dx: Tensor<T>
    /// Set by the model when the layer before applies this function itself (batch norm
    /// before ReLU, `Model.fuseLayers`): tensors then pass through unchanged both ways.
    var absorbed = false

    public init(_ function: F, shape: [Int]) throws(DLError) {
        self.function = function
        self.outputShape = shape
        self.y = try Tensor(shape: [0])
        self.dx = try Tensor(shape: [0])
    }

    public func forward(_ x: Tensor<T>, training: Bool) throws(DLError) -> Tensor<T> {
        if absorbed { return x }
        try apply(x, into: y)
        self.x = x
        return y
    }

    public func infer(_ x: Tensor<T>, scratch: InferenceScratch<T>) throws(DLError) -> Tensor<T> {
        if absorbed { return x }
        let y = scratch.output
        try apply(x, into: y)
        return y
    }

    public func backward(_ dy: Tensor<T>, needInputGradient: Bool) throws(DLError) -> Tensor<T>? {
        guard needInputGradient else { return nil }
        if absorbed { return dy }
        guard let x else { throw .invalid("\(type): backward called before forward") }
        try dx.resize(dy.shape)
        let (c, g, d) = (F.cache == .input ? x.data : y.data, dy.data, dx.data)
        Kernels.parallelFor(dy.count, cost: 1) { r in function.backward(c + r.lowerBound, g + r.lowerBound, d + r.lowerBound, r.count) }
        return dx
    }

    /// y = F(x) (`ActivationFunction.apply`).
    private func apply(_ x: Tensor<T>, into y: Tensor<T>) throws(DLError) {
        try y.resize(x.shape)
        function.apply(x.data, y.data, x.count)
    }
}

extension Activation: ActivationLayer {
    var activation: any ActivationFunction { function }
}
