import CDeepLearningKernels

/// A trainable tensor with its gradient, named as the model names it ("layers.0.weight").
///
/// The model's one list of parameters feeds the optimizer, checkpoints, gradient checks
/// and error messages; nothing keeps a parallel table.
///
/// Outside its layer a parameter exists only in its documented layout: the row-major order
/// of `value.shape` (a linear layer's weight is (out, in)). Its layer may keep it in
/// memory in another order that its kernels read faster (`storage`); `read` and `write`
/// convert, and everything outside the layer (checkpoints, get/set by index, dtype
/// conversion) goes through them. Elementwise code (optimizer updates, gradient checks)
/// may work on `value.data` and `grad.data` directly: they, and any state kept beside them
/// with the same shape (an optimizer's slots), share one storage order. Code that changes
/// `value` in place calls `changed()` when it is done: `generation` tells caches derived
/// from the values (the sparse path's base terms for single samples) that they are stale.
public final class Parameter<T: DLScalar> {
    public internal(set) var name: String
    public let value: Tensor<T>
    public let grad: Tensor<T>
    /// How the layer keeps the values in memory; nil for the row-major order of the shape.
    public private(set) var storage: (any StorageOrder)?
    /// The version of `value`: a number no other version of any parameter had, new at every
    /// change (`write`, `store`, an optimizer update, `changed()`).
    /// Read on every inference call (by caches that follow it): no run-time exclusivity
    /// checks, which cost more than the read.
    @exclusivity(unchecked) public private(set) var generation = dlk_next_generation()

    public init(_ name: String, shape: [Int]) throws(DLError) {
        self.name = name
        self.value = try Tensor(shape: shape)
        self.grad = try Tensor(shape: shape)
    }

    /// The layer's choice of storage order, made once before training: the current value is
    /// rearranged into it (the gradient is left to the next backward pass).
    func store(in order: any StorageOrder) {
        let shapeOrder = values
        storage = order
        shapeOrder.withUnsafeBufferPointer { write(value, from: $0.baseAddress!) }
    }

    /// Records that `value` changed in place (see the type's documentation).
    public func changed() { generation = dlk_next_generation() }

    /// Copies `t` (the value, or state of the same shape in this parameter's storage order)
    /// to `out` in shape order, converting the element type.
    public func read<S: DLScalar>(_ t: Tensor<T>, into out: UnsafeMutablePointer<S>) {
        if let storage { storage.read(t.data, into: out, shape: t.shape) } else { Kernels.convert(t.data, out, t.count) }
    }

    /// Fills `t` (the value, or state of the same shape) from `values` in shape order.
    public func write<S: DLScalar>(_ t: Tensor<T>, from values: UnsafePointer<S>) {
        if let storage { storage.write(values, into: t.data, shape: t.shape) } else { Kernels.convert(values, t.data, t.count) }
        if t === value { changed() }
    }

    /// `t`'s values in shape order.
    public func values(of t: Tensor<T>) -> [T] {
        [T](unsafeUninitializedCapacity: t.count) { out, n in
            read(t, into: out.baseAddress!)
            n = t.count
        }
    }

    /// The value in shape order.
    public var values: [T] { values(of: value) }

    /// Copies `t` of this parameter into `u` of `other` (the same parameter of another
    /// model, maybe of another element type or storage order).
    func copy<U: DLScalar>(_ t: Tensor<T>, to other: Parameter<U>, _ u: Tensor<U>) {
        values(of: t).withUnsafeBufferPointer { other.write(u, from: $0.baseAddress!) }
    }
}

/// An order other than row-major in which a layer keeps a parameter in memory, because its
/// kernels read it faster that way. Defined by the layer that uses it.
public protocol StorageOrder: Sendable {
    /// Copies the values of a tensor of `shape` from this order (`stored`) to row-major
    /// order (`out`), converting the element type.
    func read<S: DLScalar, D: DLScalar>(_ stored: UnsafePointer<S>, into out: UnsafeMutablePointer<D>, shape: [Int])
    /// Copies row-major `values` into this order (`stored`), converting the element type.
    func write<S: DLScalar, D: DLScalar>(_ values: UnsafePointer<S>, into stored: UnsafeMutablePointer<D>, shape: [Int])
}
