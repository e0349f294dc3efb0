import Glibc
@testable import DeepLearning

/// Test helpers: tensors from nested arrays, naive reference maths, layer gradient checks.

func tensor<T: DLScalar>(_ rows: [[T]]) throws -> Tensor<T> {
    try Tensor(shape: [rows.count, rows.first?.count ?? 0], values: rows.flatMap { $0 })
}

func rows<T: DLScalar>(_ t: Tensor<T>) -> [[T]] {
    let cols = t.count / max(t.shape[0], 1)
    return (0..<t.shape[0]).map { r in (0..<cols).map { t.data[r * cols + $0] } }
}

func maxAbsDiff(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

func randomTensor(_ shape: [Int], _ rng: inout RandomGenerator, scale: Double = 1) throws -> Tensor<Double> {
    let t = try Tensor<Double>(shape: shape)
    for i in 0..<t.count { t.data[i] = rng.normal() * scale }
    return t
}

/// The registered kind `type` of the registry of `noun` ("layer", "loss", "optimizer", "schedule").
func kind(_ noun: String, _ type: String) -> ComponentKind {
    Registries.all.first { $0.noun == noun }!.kinds.first { $0.type == type }!
}

/// Builds a spec in code (as the parser would, with the kinds' defaults filled in).
func makeSpec(input: [Int], layers: [(String, [String: SpecValue])], loss: String = "cross_entropy",
              lossOptions: [String: SpecValue] = [:], optimizer: String = "sgd",
              optimizerOptions: [String: SpecValue] = ["lr": .double(0.1)], seed: UInt64 = 7,
              dtype: DType = .float32) -> ModelSpec {
    var spec = ModelSpec(
        inputShape: input,
        layers: layers.enumerated().map { kind("layer", $1.0).spec($1.1, path: "layers[\($0)]") },
        loss: kind("loss", loss).spec(lossOptions, path: "loss"),
        optimizer: kind("optimizer", optimizer).spec(optimizerOptions, path: "optimizer"))
    spec.seed = seed
    spec.dtype = dtype
    return spec
}

/// Float64 gradient check of one layer: f(x, params) = sum(forward(x) * r) for a fixed
/// random r, so dL/dy = r. Returns the relative error of the input gradient and of each
/// parameter.
func checkLayer(_ layer: any Layer<Double>, input x: Tensor<Double>, seed: UInt64 = 3,
                training: Bool = true) throws -> (input: Double, parameters: [String: Double]) {
    var rng = RandomGenerator(seed: seed)
    let y0 = try layer.forward(x, training: training)
    let r = try randomTensor(y0.shape, &rng)
    func f() throws(DLError) -> Double {
        let y = try layer.forward(x, training: training)
        var s = 0.0
        for i in 0..<y.count { s += y.data[i] * r.data[i] }
        return s
    }
    _ = try layer.forward(x, training: training)
    let dx = try layer.backward(r, needInputGradient: true)!.array
    var result: [String: Double] = [:]
    for p in layer.parameters {
        let g = p.grad.array
        let entry = try g.withUnsafeBufferPointer { (gp) throws(DLError) in
            try GradientCheck.check(name: p.name, values: p.value.data, grad: gp.baseAddress!, count: p.value.count,
                                    limit: 0, epsilon: 1e-5, f)
        }
        result[p.name] = entry.relativeError
    }
    let inputEntry = try dx.withUnsafeBufferPointer { (gp) throws(DLError) in
        try GradientCheck.check(name: "x", values: x.data, grad: gp.baseAddress!, count: x.count, limit: 0, epsilon: 1e-5, f)
    }
    return (inputEntry.relativeError, result)
}

/// `Kernels.threads` is one setting for the whole process, and suites run in parallel: a test
/// that changes it holds the setting for its whole body, so that another suite does not
/// change the count between its setting and its checks (a pool test counting shares failed
/// once that way). `take()` waits for the setting and saves it; `release()` restores it.
final class ThreadSetting {
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        return lock
    }()
    private let saved: Int

    private init(saved: Int) { self.saved = saved }

    static func take() -> ThreadSetting {
        pthread_mutex_lock(lock)
        return ThreadSetting(saved: Kernels.threads)
    }

    func release() {
        Kernels.threads = saved
        pthread_mutex_unlock(Self.lock)
    }
}
