import Glibc
import Testing
@testable import DeepLearning

/// ONNX export and import in the core. ONNX Runtime itself checks the exported graphs in
/// bindings/python/tests/test_onnx.py; here the import is checked against the maths, and
/// damaged files against crashes.
@Suite struct ONNXTests {
    static let cnn = """
        {"format_version": 1, "name": "tiny_cnn", "input": {"shape": [1, 5, 5]},
         "layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1},
                    {"type": "batch_norm"}, {"type": "gelu"}, {"type": "avg_pool2d", "kernel_size": 2},
                    {"type": "flatten"}, {"type": "linear", "units": 3}],
         "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 2}
        """

    static func predict(_ model: any AnyModel, _ x: [Float]) throws -> [Float] {
        let n = x.count / model.inputSize
        var out = [Float](repeating: 0, count: n * model.outputSize)
        try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { op in try model.predict(x: xp.baseAddress!, count: n, into: op.baseAddress!) }
        }
        return out
    }

    @Test func exportedModelComesBackTheSame() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: Self.cnn))
        var rng = RandomGenerator(seed: 9)
        let x = (0..<(4 * 25)).map { _ in Float(rng.uniform()) }
        let labels: [Int32] = [0, 1, 2, 0]
        for _ in 0..<2 {
            _ = try x.withUnsafeBufferPointer { xp in
                try labels.withUnsafeBufferPointer { lp in try model.trainStep(x: xp.baseAddress!, batch: 4, targets: .labels(lp.baseAddress!)) }
            }
        }
        let bytes = try ONNXExport.encode(model)
        let back = try ONNXImport.decode(bytes, source: "tiny.onnx")
        #expect(back.layerTypes == model.layerTypes)
        #expect(back.spec.loss.type == "cross_entropy" && back.spec.optimizer.type == "adam")
        let (a, b) = (try Self.predict(model, x), try Self.predict(back, x))
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    /// y = relu(x W + b) * 1 for a Gemm with transB = 0 (W stored (in, out)), computed by hand.
    @Test func gemmWithoutTransposeMatchesTheMaths() throws {
        let w: [Float] = [0.5, -1, 2, 0.25, -0.5, 1.5]        // (in 3, out 2)
        let bias: [Float] = [0.1, -0.2]
        var g = ONNXGraph(name: "g", docString: "", input: ("x", [3]), output: ("y", [2]))
        g.initializers = [.init(name: "W", dims: [3, 2], values: .floats(w)), .init(name: "B", dims: [2], values: .floats(bias))]
        g.nodes = [.init(op: "Gemm", name: "fc", inputs: ["x", "W", "B"], outputs: ["h"]),
                   .init(op: "Relu", name: "relu", inputs: ["h"], outputs: ["y"])]
        let model = try ONNXImport.decode(try g.encode(irVersion: 8, opset: 17, producerVersion: "test"), source: "g.onnx")
        let x: [Float] = [1, 2, 3, -3, 0.5, 1]
        let y = try Self.predict(model, x)
        for r in 0..<2 {
            for c in 0..<2 {
                var v = bias[c]
                for k in 0..<3 { v += x[r * 3 + k] * w[k * 2 + c] }
                #expect(abs(y[r * 2 + c] - max(v, 0)) <= 1e-6)
            }
        }
    }

    @Test func refusedGraphsNameTheNode() throws {
        var g = ONNXGraph(name: "g", docString: "", input: ("x", [4]), output: ("y", [4]))
        g.nodes = [.init(op: "Erf", name: "my_erf", inputs: ["x"], outputs: ["y"])]
        #expect {
            _ = try ONNXImport.decode(try g.encode(irVersion: 8, opset: 17, producerVersion: "t"), source: "g.onnx")
        } throws: { error in
            let e = error as? DLError
            return e?.kind == .unsupported && e?.message.contains("\"my_erf\" (Erf)") == true
        }
    }

    /// Every prefix of an exported file, and files with bytes changed, give an error or a
    /// model, never a crash. A prefix that decodes lost only metadata (the last fields):
    /// it predicts what the whole file does.
    @Test func damagedFilesNeverCrash() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: Self.cnn))
        let bytes = try ONNXExport.encode(model)
        let x = (0..<50).map { Float($0) / 50 }
        let want = try Self.predict(model, x)
        var refused = 0
        for cut in 0..<bytes.count {
            guard let m = try? ONNXImport.decode(Array(bytes[0..<cut]), source: "cut") else { refused += 1; continue }
            #expect(try Self.predict(m, x) == want, "prefix of \(cut) bytes")
        }
        #expect(refused > bytes.count / 2)
        var rng = RandomGenerator(seed: 1)
        for _ in 0..<300 {
            var damaged = bytes
            for _ in 0..<3 {
                let i = Int(rng.uniform() * Double(damaged.count)) % damaged.count
                damaged[i] = UInt8(Int(rng.uniform() * 256) % 256)
            }
            _ = try? ONNXImport.decode(damaged, source: "damaged")
        }
    }

    @Test func formatsByNameAndExtension() throws {
        #expect(try ModelFormat.resolve(nil, path: "a/b.ONNX") == .onnx)
        #expect(try ModelFormat.resolve(nil, path: "m.hdf5") == .h5)
        #expect(try ModelFormat.resolve("onnx", path: "m.bin") == .onnx)
        #expect(throws: DLError.self) { try ModelFormat.resolve(nil, path: "m.bin") }
        #expect(throws: DLError.self) { try ModelFormat.resolve("tflite", path: "m.onnx") }
    }

    /// Reading a `.h5` looks inside to tell Keras's files from checkpoints. A file the HDF5
    /// reader refuses fails that look with the reader's error, instead of passing for a
    /// checkpoint that is then read (and refused, or on a looping file waited for) again.
    @Test func anUnreadableH5FailsTheFormatLookOnce() throws {
        let path = temporaryDirectory() + "/damaged.h5"
        let file = try #require(fopen(path, "wb"))
        _ = "not an HDF5 file".withCString { fwrite($0, 1, 16, file) }
        fclose(file)
        #expect(try ModelFormat.resolve(nil, path: path) == .h5, "writing does not look")
        do {
            _ = try ModelFormat.resolve(nil, path: path, reading: true)
            Issue.record("an unreadable file resolved to a format")
        } catch {
            #expect(error.kind == .format && error.message.contains("not an HDF5 file"), "\(error.message)")
        }
    }
}
