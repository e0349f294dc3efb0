import CDeepLearningSupport
import DeepLearning
import Glibc

/// What a `dl_model *` points to: the model and the C strings handed out for it.
final class ModelBox {
    var model: any AnyModel
    /// C strings returned by introspection functions, owned until the model is freed.
    private var strings: [String: UnsafeMutablePointer<CChar>] = [:]

    init(_ model: any AnyModel) { self.model = model }

    deinit { for p in strings.values { free(p) } }

    /// A stable C copy of `s`, made once per distinct string.
    func cString(_ s: String) throws(DLError) -> UnsafePointer<CChar> {
        if let p = strings[s] { return UnsafePointer(p) }
        guard let p = strdup(s) else { throw DLError(.noMemory, "out of memory copying a string") }
        strings[s] = p
        return UnsafePointer(p)
    }
}

/// The live handles, and which of them a thread is using right now.
///
/// Every call looks its handle up here, so NULL, freed or foreign pointers are refused with
/// a message instead of crashing, and a second thread using the same model gets DL_BUSY
/// instead of corrupting it. The lock is held only for the lookup.
final class HandleRegistry: @unchecked Sendable {
    static let shared = HandleRegistry()

    private var live: [UnsafeMutableRawPointer: Bool] = [:]   // handle -> busy
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    private init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    private func locked<R>(_ body: () throws(DLError) -> R) throws(DLError) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Registers a new model and returns its handle.
    func register(_ model: any AnyModel) -> OpaquePointer {
        let raw = Unmanaged.passRetained(ModelBox(model)).toOpaque()
        try? locked { live[raw] = false }
        return OpaquePointer(raw)
    }

    /// Marks the handle busy and returns its box; `release` must follow.
    func acquire(_ handle: OpaquePointer?) throws(DLError) -> ModelBox {
        guard let handle else { throw .invalid("model is NULL") }
        let raw = UnsafeMutableRawPointer(handle)
        return try locked { () throws(DLError) -> ModelBox in
            guard let busy = live[raw] else {
                throw .invalid("model \(raw) is not a live model (already freed, or not a dl_model)")
            }
            guard !busy else {
                throw DLError(.busy, "the model is being used by another thread; use dl_model_clone() to give each thread its own")
            }
            live[raw] = true
            return Unmanaged<ModelBox>.fromOpaque(raw).takeUnretainedValue()
        }
    }

    func release(_ handle: OpaquePointer?) {
        guard let handle else { return }
        try? locked { live[UnsafeMutableRawPointer(handle)] = false }
    }

    /// Forgets a handle and frees its model. Unknown handles are ignored; a busy one is
    /// refused (freeing it would pull the model from under the other thread).
    func free(_ handle: OpaquePointer?) throws(DLError) {
        guard let handle else { return }
        let raw = UnsafeMutableRawPointer(handle)
        let known = try locked { () throws(DLError) -> Bool in
            guard let busy = live[raw] else { return false }
            guard !busy else { throw DLError(.busy, "the model is being used by another thread and cannot be freed now") }
            live[raw] = nil
            return true
        }
        if known { Unmanaged<ModelBox>.fromOpaque(raw).release() }
    }
}

// MARK: - Status

/// Runs `body`, turning a thrown `DLError` into its status code and this thread's message.
func status(_ body: () throws(DLError) -> Void) -> Int32 {
    do {
        try body()
        dlx_set_error("")
        return 0
    } catch {
        dlx_set_error(error.message)
        return error.kind.rawValue
    }
}

/// Runs `body` with the model behind `handle`, holding it for this thread.
func withModel(_ handle: OpaquePointer?, _ body: (ModelBox) throws(DLError) -> Void) -> Int32 {
    status { () throws(DLError) in
        let box = try HandleRegistry.shared.acquire(handle)
        defer { HandleRegistry.shared.release(handle) }
        try body(box)
    }
}

/// Checks an OUT pointer.
func required<P>(_ pointer: P?, _ name: String) throws(DLError) -> P {
    guard let pointer else { throw .invalid("\(name) is NULL") }
    return pointer
}

/// Exactly one of labels and targets, as the model wants them.
func batchTargets(_ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?) throws(DLError) -> BatchTargets<Float> {
    switch (labels, targets) {
    case (let l?, nil): return .labels(l)
    case (nil, let t?): return .values(t)
    case (nil, nil): throw .invalid("labels and targets are both NULL; pass one of them")
    case (_?, _?): throw .invalid("labels and targets are both given; pass only one of them")
    }
}

/// A size_t argument: Swift sees values above Int.max as negative; refuse them by name.
func size(_ n: Int, _ name: String) throws(DLError) -> Int {
    guard n >= 0 else { throw .invalid("\(name) is \(UInt(bitPattern: n)), more than the library accepts") }
    return n
}

/// A buffer capacity (size_t): anything above Int.max is as good as Int.max.
func capacity(_ n: Int) -> Int { n < 0 ? Int.max : n }
