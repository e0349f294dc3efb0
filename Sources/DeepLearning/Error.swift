/// The kind of a failure; the C ABI maps each kind to a fixed status code.
public enum DLErrorKind: Int32, Sendable {
    /// An argument is invalid: NULL, a size of zero, a wrong shape, a label out of range.
    case invalidArgument = 2
    /// A model spec is malformed or inconsistent.
    case spec = 3
    /// A file could not be opened, read or written.
    case io = 4
    /// A file has the wrong format, is damaged, or does not match the model.
    case format = 5
    /// Memory could not be allocated, or a size would exceed the library's limits.
    case noMemory = 6
    /// An input, target or result is NaN or infinite.
    case numeric = 7
    /// The operation does not apply to this model (for example class labels with MSE).
    case unsupported = 8
    /// The model is in use by another thread.
    case busy = 9
    /// A progress callback asked a long call to stop (the work done before it stays done).
    case cancelled = 10
    /// A bug in the library itself.
    case `internal` = 1
}

/// The one error type the core throws. `message` is complete and names the culprit.
public struct DLError: Error, CustomStringConvertible, Sendable {
    public let kind: DLErrorKind
    public let message: String

    public init(_ kind: DLErrorKind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public static func invalid(_ message: String) -> DLError { DLError(.invalidArgument, message) }
}

/// Limits that keep a caller's sizes from exhausting memory or overflowing `Int`.
public enum Limits {
    /// Largest number of scalars in any one tensor (2^31 - 1, so every dimension fits BLAS's 32-bit int).
    public static let maxTensorElements = (1 << 31) - 1
    /// Largest number of trainable scalars in a model (256 Mi: 1 GiB of float32, 4 GiB
    /// with gradients and Adam's state).
    public static let maxModelParameters = 1 << 28
}

/// `a * b`, or an error naming `what` when the product overflows or exceeds the tensor limit.
@inline(__always)
public func checkedProduct(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(DLError) -> Int {
    let (p, overflow) = a.multipliedReportingOverflow(by: b)
    if overflow || a < 0 || b < 0 || p > Limits.maxTensorElements {
        throw DLError(.noMemory, "\(what()): \(a) x \(b) elements exceeds the limit of \(Limits.maxTensorElements)")
    }
    return p
}

/// Product of a shape's dimensions, checked against overflow and the tensor limit.
public func checkedCount(_ shape: [Int], _ what: @autoclosure () -> String) throws(DLError) -> Int {
    var n = 1
    for d in shape { n = try checkedProduct(n, d, what()) }
    return n
}
