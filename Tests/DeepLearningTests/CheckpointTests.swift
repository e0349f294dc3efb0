import Glibc
import Testing
@testable import DeepLearning

/// A fresh temporary directory for one test.
func temporaryDirectory() -> String {
    var template = Array("/tmp/dl-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    return bytes
}

func writeBytes(_ path: String, _ bytes: some Collection<UInt8>) {
    let f = fopen(path, "wb")!
    _ = Array(bytes).withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

/// A regression batch (x in [-2, 2], y = sin x) of `n` samples from `seed`.
func regressionBatch(_ n: Int, seed: UInt64) -> ([Float], [Float]) {
    var rng = RandomGenerator(seed: seed)
    let x = (0..<n).map { _ in Float(4 * rng.uniform() - 2) }
    return (x, x.map { Float.sin($0) })
}

func step(_ model: any AnyModel, _ i: Int) throws {
    let (x, y) = regressionBatch(16, seed: UInt64(i))
    _ = try x.withUnsafeBufferPointer { xp in
        try y.withUnsafeBufferPointer { yp in try model.trainStep(x: xp.baseAddress!, batch: 16, targets: .values(yp.baseAddress!)) }
    }
}

func parameters(_ model: any AnyModel) throws -> [[Float]] {
    try model.parameterShapes.enumerated().map { i, shape in
        var out = [Float](repeating: 0, count: shape.reduce(1, *))
        try out.withUnsafeMutableBufferPointer { try model.readParameter(i, into: $0.baseAddress!, count: $0.count) }
        return out
    }
}

func regressionSpec(_ optimizer: String, _ options: [String: SpecValue], dtype: DType = .float32) throws -> ModelSpec {
    let opts = options.map { "\"\($0.key)\": \(render($0.value))" }.joined(separator: ", ")
    return try SpecParser.parse(json: """
    {"input": {"size": 1}, "layers": [{"type": "linear", "units": 16}, {"type": "tanh"}, {"type": "linear", "units": 1}],
     "loss": {"type": "huber", "delta": 0.5}, "optimizer": {"type": "\(optimizer)", \(opts)}, "seed": 5, "dtype": "\(dtype.rawValue)"}
    """)
}

private func render(_ v: SpecValue) -> String {
    switch v {
    case .double(let d): return "\(d)"
    case .int(let i): return "\(i)"
    default: return "null"
    }
}

func directoryEntries(_ dir: String) -> [String] {
    guard let listing = opendir(dir) else { return [] }
    defer { closedir(listing) }
    var names: [String] = []
    while let entry = readdir(listing) {
        var raw = entry.pointee.d_name
        let name = withUnsafePointer(to: &raw) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if !name.hasPrefix(".") { names.append(name) }
    }
    return names
}

@Suite struct CheckpointTests {
    static let optimizers: [(String, [String: SpecValue])] = [
        ("sgd", ["lr": .double(0.05)]),
        ("sgd", ["lr": .double(0.05), "momentum": .double(0.9), "weight_decay": .double(1e-3)]),
        ("adam", ["lr": .double(0.01)]),
        ("rmsprop", ["lr": .double(0.01)]),
    ]

    /// Training resumed from a checkpoint ends bit-identical to training that never stopped.
    @Test(arguments: 0..<4)
    func resumeIsExact(which: Int) throws {
        let (name, options) = Self.optimizers[which]
        let dir = temporaryDirectory()
        let path = dir + "/resume.h5"
        let spec = try regressionSpec(name, options)
        let straight = try makeModel(spec: spec)
        for i in 0..<20 { try step(straight, i) }

        let first = try makeModel(spec: spec)
        for i in 0..<10 { try step(first, i) }
        first.epoch = 3
        try first.save(to: path)
        let resumed = try loadModel(from: path)
        #expect(resumed.stepCount == 10)
        #expect(resumed.epoch == 3)
        #expect(resumed.samplesSeen == 160)
        #expect(try parameters(resumed) == parameters(first))
        for i in 10..<20 { try step(resumed, i) }
        #expect(try parameters(resumed) == parameters(straight), "\(name) \(options)")
    }

    @Test func predictionsSurviveARoundTrip() throws {
        for dtype in [DType.float32, .float64] {
            let dir = temporaryDirectory()
            let model = try makeModel(spec: try regressionSpec("adam", ["lr": .double(0.01)], dtype: dtype))
            for i in 0..<5 { try step(model, i) }
            try model.save(to: dir + "/m.h5")
            let loaded = try loadModel(from: dir + "/m.h5")
            #expect(loaded.spec.dtype == dtype)
            let (x, _) = regressionBatch(50, seed: 99)
            var a = [Float](repeating: 0, count: 50), b = a
            try x.withUnsafeBufferPointer { xp in
                try a.withUnsafeMutableBufferPointer { try model.predict(x: xp.baseAddress!, count: 50, into: $0.baseAddress!) }
                try b.withUnsafeMutableBufferPointer { try loaded.predict(x: xp.baseAddress!, count: 50, into: $0.baseAddress!) }
            }
            #expect(a == b)
            #expect(loaded.spec.json == model.spec.json)
        }
    }

    @Test func savingOverAnExistingFileReplacesItWhole() throws {
        let dir = temporaryDirectory()
        let path = dir + "/m.h5"
        let model = try makeModel(spec: try regressionSpec("sgd", ["lr": .double(0.1)]))
        try model.save(to: path)
        try step(model, 0)
        try model.save(to: path)
        #expect(try parameters(loadModel(from: path)) == parameters(model))
        // No temporary files are left behind.
        #expect(directoryEntries(dir) == ["m.h5"])
        // A save that cannot happen leaves the old file intact.
        #expect(throws: DLError.self) { try model.save(to: dir + "/no/such/dir/m.h5") }
    }

    /// Truncated copies and random bytes are refused with a message, never a crash.
    @Test func damagedFilesAreRefused() throws {
        let dir = temporaryDirectory()
        let good = dir + "/good.h5"
        try makeModel(spec: try regressionSpec("adam", ["lr": .double(0.01)])).save(to: good)
        let bytes = readBytes(good)
        #expect(bytes.count > 1000)
        var cuts = stride(from: 0, to: bytes.count, by: max(1, bytes.count / 40)).map { $0 }
        cuts += [1, 8, 100, 512, bytes.count - 1]
        var rng = RandomGenerator(seed: 1)
        var messages = Set<String>()
        for (i, cut) in cuts.enumerated() {
            let path = dir + "/cut\(i).h5"
            writeBytes(path, bytes[0..<cut])
            do {
                _ = try loadModel(from: path)
                Issue.record("a file cut at \(cut) of \(bytes.count) bytes loaded")
            } catch {
                #expect(error.kind == .format || error.kind == .io)
                #expect(error.message.hasPrefix(path))
                messages.insert(error.message)
            }
        }
        for i in 0..<10 {
            let path = dir + "/random\(i).h5"
            writeBytes(path, (0..<(1000 + 500 * i)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            #expect(throws: DLError.self) { try loadModel(from: path) }
        }
        // Random bytes written over the middle of a good file.
        for i in 0..<10 {
            var damaged = bytes
            let start = bytes.count / 4 + rng.below(bytes.count / 2)
            for j in start..<min(start + 64, damaged.count) { damaged[j] = UInt8(truncatingIfNeeded: rng.next()) }
            let path = dir + "/scribbled\(i).h5"
            writeBytes(path, damaged)
            // Either refused, or (when the bytes hit padding) loaded and finite.
            if let model = try? loadModel(from: path) {
                #expect(try parameters(model).allSatisfy { $0.allSatisfy(\.isFinite) })
            }
        }
        do {
            _ = try loadModel(from: dir + "/missing.h5")
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.kind == .io)
        }
        writeBytes(dir + "/text.h5", Array("{\"not\": \"hdf5\"}".utf8))
        #expect(throws: DLError.self) { try loadModel(from: dir + "/text.h5") }
        #expect(messages.count > 1)
    }
}
