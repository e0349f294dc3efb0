import CDeepLearningSupport
import DeepLearning
import Glibc

/// What every handle's box carries for the registry: who is using it now. Read and
/// written only under the registry's mutex.
class HandleUse {
    /// No run-time exclusivity checks: the mutex is what keeps accesses apart.
    @exclusivity(unchecked) fileprivate var use = HandleRegistry.Use()
}

/// What a handle (`dl_model *`, `dl_layer *`, `dl_loss *`, `dl_dataset *`) points to: the
/// object and the C strings handed out for it.
final class Box<Value>: HandleUse {
    let value: Value
    /// A model's progress callback (dl_model_set_progress); nil for other handles.
    var progress: CProgress?
    /// C strings returned by introspection functions, owned until the handle is freed.
    private var strings: [String: UnsafeMutablePointer<CChar>] = [:]

    init(_ value: Value) {
        self.value = value
        super.init()
    }

    deinit { for p in strings.values { free(p) } }

    /// A stable C copy of `s`, made once per distinct string.
    func cString(_ s: String) throws(DLError) -> UnsafePointer<CChar> {
        if let p = strings[s] { return UnsafePointer(p) }
        guard let p = strdup(s) else { throw DLError(.noMemory, "out of memory copying a string") }
        strings[s] = p
        return UnsafePointer(p)
    }
}

/// The header's dl_progress_fn and the user data it is called with.
struct CProgress {
    typealias Function = @convention(c) (UnsafeMutableRawPointer?, Int, Int, Int, Double) -> Int32
    let function: Function
    let userData: UnsafeMutableRawPointer?

    /// The core's progress handler calling `function`; a non-zero answer throws
    /// `.cancelled`, naming `call` and how far it got.
    func handler(_ call: String, _ unit: String) -> ProgressHandler {
        { (p) throws(DLError) in
            dlx_set_accuracy(p.samplesCorrect.map { Double($0) / Double(max(p.samplesDone, 1)) } ?? .nan)
            if function(userData, p.batchesDone, p.batchCount, p.samplesDone, p.meanLoss) != 0 {
                throw DLError(.cancelled, "\(call) stopped by its progress callback after \(p.batchesDone) of \(p.batchCount) \(unit)")
            }
        }
    }
}

typealias ModelBox = Box<any AnyModel>
typealias LayerBox = Box<any AnyStandaloneLayer>
typealias LossBox = Box<any AnyStandaloneLoss>
typealias DatasetBox = Box<Dataset>

/// The live handles, and which of them a thread is using right now.
///
/// Every call looks its handle up here, so NULL, freed or foreign pointers are refused with
/// a message instead of crashing. Calls that only read an object (inference on a model,
/// any use of a data set) take it shared: any number of threads at once. Every other call
/// takes it exclusively. A call that finds its handle taken the other way waits up to
/// `patience` for it, and then gets DL_BUSY; a waiting exclusive call goes first (shared
/// calls that arrive meanwhile wait behind it), so a train step among threads that
/// predict again and again is not starved. A thread never waits for itself: a call made
/// from a progress callback on the model that is running it gets DL_BUSY at once (or, for
/// a shared use inside a shared one, simply proceeds). The lock is held only to look up
/// and to wait.
final class HandleRegistry: @unchecked Sendable {
    static let shared = HandleRegistry()

    /// How long a call waits for another thread's use of its handle to end.
    static let patience: (seconds: Int, nanoseconds: Int) = (0, 250_000_000)

    /// Who is using a handle now, and who waits for it (each box's `use`).
    fileprivate struct Use {
        /// 0 none, -1 one exclusive user, n > 0 n shared users.
        var count = 0
        /// The threads using it (when `count` is not 0): the first here, so that the
        /// common single user costs no allocation, any others in `more`.
        var first: pthread_t = 0
        var more: [pthread_t] = []
        /// Exclusive calls waiting for it.
        var waiting = 0

        func isUsed(by me: pthread_t) -> Bool {
            count != 0 && (pthread_equal(first, me) != 0 || more.contains { pthread_equal($0, me) != 0 })
        }

        mutating func add(_ me: pthread_t, shared: Bool) {
            if count == 0 { first = me } else { more.append(me) }
            count = shared ? count + 1 : -1
        }

        mutating func remove(_ me: pthread_t) {
            count = count > 0 ? count - 1 : 0
            if let i = more.lastIndex(where: { pthread_equal($0, me) != 0 }) {
                more.remove(at: i)
            } else if !more.isEmpty {
                first = more.removeLast()
            }
        }
    }

    /// The live handles and the type of box each points to (`Box<Value>`), so that a
    /// handle of another kind is refused before it is dereferenced. Read and written only
    /// under `mutex`, never re-entrantly: no run-time exclusivity checks (two per call each
    /// way). Their uses are kept in the boxes: a call looks its handle up here once, and
    /// its release needs no lookup.
    @exclusivity(unchecked) private var live: [UnsafeMutableRawPointer: ObjectIdentifier] = [:]
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let released: UnsafeMutablePointer<pthread_cond_t>

    private init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        released = .allocate(capacity: 1)
        pthread_cond_init(released, nil)
    }

    private func locked<R>(_ body: () throws(DLError) -> R) throws(DLError) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Registers a new box and returns its handle. (A box, not a bare value: a generic
    /// `Value` parameter would open an existential argument, and `Box<Model<Float>>` would
    /// then not be found as the `Box<any AnyModel>` that `acquire` looks for.)
    func register<Value>(_ box: Box<Value>) -> OpaquePointer {
        let raw = Unmanaged.passRetained(box).toOpaque()
        try? locked { live[raw] = ObjectIdentifier(Box<Value>.self) }
        return OpaquePointer(raw)
    }

    /// The box behind `raw` when it is a live handle of kind `Value`, unretained (the
    /// registry holds it); nil for anything else. Under `mutex`.
    private func liveBox<Value>(_ raw: UnsafeMutableRawPointer, _: Value.Type) -> Box<Value>? {
        guard live[raw] == ObjectIdentifier(Box<Value>.self) else { return nil }
        return Unmanaged<Box<Value>>.fromOpaque(raw).takeUnretainedValue()
    }

    /// The absolute time `patience` from now, for pthread_cond_timedwait (CLOCK_REALTIME).
    private static func deadline() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var nanoseconds = now.tv_nsec + patience.nanoseconds
        var seconds = now.tv_sec + patience.seconds
        if nanoseconds >= 1_000_000_000 { nanoseconds -= 1_000_000_000; seconds += 1 }
        return timespec(tv_sec: seconds, tv_nsec: nanoseconds)
    }

    /// Whether a use of the kind asked for can start now. Shared uses queue behind a waiting
    /// exclusive one, except inside this thread's own use.
    private static func available(_ use: Use, shared: Bool, mine: Bool) -> Bool {
        shared ? use.count >= 0 && (use.waiting == 0 || mine) : use.count == 0
    }

    /// Marks the handle in use and returns its box; `release` must follow. `noun` names the
    /// handle's type in messages ("model"). A `shared` use may overlap other shared uses;
    /// an exclusive one overlaps nothing.
    func acquire<Value>(_ handle: OpaquePointer?, _ noun: String, shared: Bool = false) throws(DLError) -> Box<Value> {
        guard let handle else { throw .invalid("\(noun) is NULL") }
        let raw = UnsafeMutableRawPointer(handle)
        let me = pthread_self()
        return try locked { () throws(DLError) -> Box<Value> in
            var deadline: timespec? = nil
            var waiting = false
            defer {
                // An exclusive call that gives up lets the shared ones queued behind it go.
                if waiting, let box = liveBox(raw, Value.self) {
                    box.use.waiting -= 1
                    if box.use.waiting == 0 { pthread_cond_broadcast(released) }
                }
            }
            while true {
                let mine: Bool
                do {   // the box is not held across the wait below: it may be freed meanwhile
                    guard let box = liveBox(raw, Value.self) else {
                        throw .invalid("\(noun) \(raw) is not a live dl_\(noun) (already freed, or another kind of handle)")
                    }
                    mine = box.use.isUsed(by: me)
                    if HandleRegistry.available(box.use, shared: shared, mine: mine) {
                        box.use.add(me, shared: shared)
                        if waiting { box.use.waiting -= 1; waiting = false }
                        return box
                    }
                    if !mine && !shared && !waiting {
                        box.use.waiting += 1
                        waiting = true
                    }
                }
                if !mine {
                    if deadline == nil { deadline = HandleRegistry.deadline() }
                    if var until = deadline, pthread_cond_timedwait(released, mutex, &until) == 0 { continue }
                    // Timed out: one last look (a release may have come with the timeout).
                    if let again = liveBox(raw, Value.self), HandleRegistry.available(again.use, shared: shared, mine: false) { continue }
                }
                let hint = noun == "model"
                    ? (shared ? "it is being trained or changed by another thread" : "another thread is using it (several threads may predict and evaluate at once, but a train step, a set_* call or free needs it alone)")
                    : "give each thread its own"
                throw DLError(.busy, "the \(noun) is busy: \(mine ? "this thread is using it already (a call from a progress callback on its own model)" : hint)")
            }
        }
    }

    /// Ends this thread's use of `box` (from `acquire`, which the registry still holds:
    /// a box in use cannot be freed).
    func release(_ box: HandleUse) {
        let me = pthread_self()
        try? locked {
            box.use.remove(me)
            // Every waiting call needs the handle free (an exclusive one, or a shared one queued
            // behind it); until then there is nothing to wake them for.
            if box.use.count == 0 { pthread_cond_broadcast(released) }
        }
    }

    /// Forgets a handle of kind `Value` and frees its object. Unknown handles and handles of
    /// another kind are ignored; a busy one is refused (freeing it would pull the object from
    /// under the other thread).
    func free<Value>(_ handle: OpaquePointer?, _ type: Value.Type, _ noun: String) throws(DLError) {
        guard let handle else { return }
        let raw = UnsafeMutableRawPointer(handle)
        let known = try locked { () throws(DLError) -> Bool in
            guard let box = liveBox(raw, Value.self) else { return false }
            guard box.use.count == 0 else { throw DLError(.busy, "the \(noun) is being used by another thread and cannot be freed now") }
            live[raw] = nil
            pthread_cond_broadcast(released)   // waiting calls then find it gone
            return true
        }
        if known { Unmanaged<Box<Value>>.fromOpaque(raw).release() }
    }
}

// MARK: - Status

/// Runs `body`, turning a thrown `DLError` into its status code and this thread's message.
func status(_ body: () throws(DLError) -> Void) -> Int32 {
    do {
        try body()
        dlx_clear_error()
        return 0
    } catch {
        dlx_set_error(error.message)
        return error.kind.rawValue
    }
}

/// Runs `body` with the object behind `handle`, held for this thread (exclusively unless
/// `shared`) until it returns.
func holding<Value>(_ handle: OpaquePointer?, _ noun: String, shared: Bool = false,
                    _ body: (Box<Value>) throws(DLError) -> Void) throws(DLError) {
    let box: Box<Value> = try HandleRegistry.shared.acquire(handle, noun, shared: shared)
    defer { HandleRegistry.shared.release(box) }
    try body(box)
}

/// `holding` as a whole call: returns its status.
func with<Value>(_ handle: OpaquePointer?, _ noun: String, shared: Bool = false,
                 _ body: (Box<Value>) throws(DLError) -> Void) -> Int32 {
    status { () throws(DLError) in try holding(handle, noun, shared: shared, body) }
}

func withModel(_ handle: OpaquePointer?, _ body: (ModelBox) throws(DLError) -> Void) -> Int32 { with(handle, "model", body) }
/// A call that only reads the model (inference, properties, parameter values): any number
/// of threads at once, while nothing takes the model exclusively (a train step, a set_*
/// call, free). Such a body must not change the box either (no `cString`).
func readingModel(_ handle: OpaquePointer?, _ body: (ModelBox) throws(DLError) -> Void) -> Int32 {
    with(handle, "model", shared: true, body)
}
func withLayer(_ handle: OpaquePointer?, _ body: (LayerBox) throws(DLError) -> Void) -> Int32 { with(handle, "layer", body) }
func withLoss(_ handle: OpaquePointer?, _ body: (LossBox) throws(DLError) -> Void) -> Int32 { with(handle, "loss", body) }
/// Data sets are never changed after loading, so any number of threads may read one at once.
func withDataset(_ handle: OpaquePointer?, _ body: (DatasetBox) throws(DLError) -> Void) -> Int32 {
    with(handle, "dataset", shared: true, body)
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

/// A size_t argument (a count, a size, an index): refused by name above
/// `Limits.maxTensorElements`.
///
/// Every size the library works with ends up counting the elements of one tensor, so no
/// valid argument is larger; capping them all here, at the border, is what lets the core
/// add and round sizes (`count + batch - 1`, `features + 1`) without overflow checks of its
/// own. Swift sees size_t values above Int.max as negative; they are refused the same way.
func size(_ n: Int, _ name: String) throws(DLError) -> Int {
    guard n >= 0, n <= Limits.maxTensorElements else {
        throw .invalid("\(name) is \(UInt(bitPattern: n)), more than the library's limit of \(Limits.maxTensorElements)")
    }
    return n
}

/// A shape passed as `ndim` size_t values, each checked as `size` checks a size.
func dimensions(_ shape: UnsafePointer<Int>, _ ndim: Int, _ name: String) throws(DLError) -> [Int] {
    var dims: [Int] = []
    for i in 0..<ndim { dims.append(try size(shape[i], "\(name)[\(i)]")) }
    return dims
}

/// Refuses, with DL_NOMEM, a Swift array of `count` values of `T` that malloc could not
/// provide right now. A Swift array traps when its allocation fails, so where a caller
/// decides a size the memory is asked of malloc first and given straight back: a refusal
/// becomes an error, and an allocation that succeeded a moment ago is very likely to
/// succeed again.
func checkAllocation<T>(_ count: Int, of _: T.Type, _ what: String) throws(DLError) {
    let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
    guard !overflow, count >= 0, let p = malloc(max(bytes, 1)) else {
        throw DLError(.noMemory, "out of memory: \(what) needs \(count) values")
    }
    free(p)
}

/// A buffer capacity (size_t): anything above Int.max is as good as Int.max.
func capacity(_ n: Int) -> Int { n < 0 ? Int.max : n }
