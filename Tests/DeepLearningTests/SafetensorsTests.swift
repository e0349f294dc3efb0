import Glibc
import Testing
@testable import DeepLearning

/// The safetensors reader and writer, and the nn.Sequential state dict mapping. The real
/// `safetensors` package reads and writes these files in bindings/python/tests/test_safetensors.py;
/// here the format is checked byte by byte, the mapping against a forward pass computed by
/// hand from the file's tensors, and malformed files against their messages.
@Suite struct SafetensorsTests {
    static let mlp = """
        {"name": "tiny_mlp", "input_size": 3,
         "layers": [{"type": "linear", "units": 4}, {"type": "batch_norm"}, {"type": "relu"},
                    {"type": "dropout", "rate": 0.25}, {"type": "linear", "units": 2}],
         "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 4}
        """

    /// A fresh folder under /tmp.
    static func folder() -> String {
        var template = Array("/tmp/dl-safetensors-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    static func write(_ bytes: [UInt8], _ path: String) {
        let f = fopen(path, "wb")!
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }

    static func read(_ path: String) -> [UInt8] {
        let f = fopen(path, "rb")!
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            bytes += chunk[0..<n]
            if n < chunk.count { return bytes }
        }
    }

    /// A file: the 8-byte length of `header`, `header`, then `data`.
    static func file(_ header: String, data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { bytes += $0 }
        return bytes + Array(header.utf8) + data
    }

    /// The `.format` message opening `bytes` gives (nil if it opens).
    static func failure(_ bytes: [UInt8]) -> DLError? {
        let path = folder() + "/t.safetensors"
        write(bytes, path)
        defer { unlink(path) }
        do throws(DLError) {
            _ = try SafetensorsFile(path: path)
            return nil
        } catch {
            return error
        }
    }

    static func predict(_ model: any AnyModel, _ x: [Float]) throws -> [Float] {
        let n = x.count / model.inputSize
        var out = [Float](repeating: 0, count: n * model.outputSize)
        try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { op in try model.predict(x: xp.baseAddress!, count: n, into: op.baseAddress!) }
        }
        return out
    }

    @Test func aValidFileIsReadAsWritten() throws {
        // Two F32 tensors and an I64 scalar, written by hand.
        let header = #"{"__metadata__": {"format": "pt"}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}, "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}, "n": {"dtype": "I64", "shape": [], "data_offsets": [20, 28]}}  "#
        var data: [UInt8] = []
        for v: Float in [1, 2, 3, -1, 0.5] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        withUnsafeBytes(of: Int64(7).littleEndian) { data += $0 }
        let path = Self.folder() + "/ok.safetensors"
        Self.write(Self.file(header, data: data), path)
        let f = try SafetensorsFile(path: path)
        #expect(f.entries.map(\.name) == ["a", "b", "n"])       // in data order
        #expect(f.entries.map(\.shape) == [[3], [2], []])
        #expect(f.metadata("format") == "pt")
        var values = [Float](repeating: 0, count: 2)
        try values.withUnsafeMutableBytes { try f.read(f.entry("b")!, into: $0.baseAddress!) }
        #expect(values == [-1, 0.5])
    }

    /// Each malformed file gets a `.format` error saying what is wrong.
    @Test func malformedFilesGetPreciseErrors() throws {
        let four = [UInt8](repeating: 0, count: 4)
        let cases: [([UInt8], String)] = [
            ([1, 2, 3], "too short for a safetensors file"),
            (Self.file("{}", data: [], length: 1 << 40), "beyond the file's"),
            (Self.file("{}", data: [], length: UInt64.max), "beyond the file's"),
            (Self.file("[1, 2]", data: []), "does not start with"),
            (Self.file("{\"a\": ", data: []), "JSON syntax error"),
            (Self.file(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}"#, data: four), "outside the 4 bytes of data"),
            (Self.file(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}"#, data: four), "reversed"),
            (Self.file(#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#, data: four), "span 4 bytes, but shape [2] of F32 needs 8"),
            (Self.file(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}"#, data: four), "overlap"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}"#, data: four), "data bytes 0..<2 belong to no tensor"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#, data: four), "ends at byte 2, but the file holds 4"),
            (Self.file(#"{"a": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 4]}}"#, data: four), "dtype \"Q7\" is not one this reader knows"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [-4], "data_offsets": [0, 4]}}"#, data: four), "shape must be an array of non-negative integers"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}"#, data: four), "more elements than the file holds bytes"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0]}}"#, data: four), "data_offsets must be two non-negative integers"),
            (Self.file(#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4], "x": 1}}"#, data: four), "unknown key \"x\""),
            (Self.file(#"{"a": {"shape": [4], "data_offsets": [0, 4]}}"#, data: four), "no dtype"),
            (Self.file(#"{"a": [1]}"#, data: []), "expected an object"),
            (Self.file(#"{"__metadata__": {"k": 1}}"#, data: []), "__metadata__ \"k\" must be a string"),
            (Self.file(#"{"__metadata__": [1]}"#, data: []), "__metadata__ must be an object of strings"),
        ]
        for (bytes, message) in cases {
            let e = Self.failure(bytes)
            #expect(e?.kind == .format && e?.message.contains(message) == true, "\(message): got \(String(describing: e))")
        }
    }

    @Test func halfAndBFloat16AreDecodedExactly() {
        #expect(TorchStateDict.halfToFloat(0x3C00) == 1)
        #expect(TorchStateDict.halfToFloat(0xC000) == -2)
        #expect(TorchStateDict.halfToFloat(0x7BFF) == 65504)
        #expect(TorchStateDict.halfToFloat(0x0001) == 0x1p-24)        // smallest subnormal
        #expect(TorchStateDict.halfToFloat(0x03FF) == Float(1023) * 0x1p-24)
        #expect(TorchStateDict.halfToFloat(0x3555) == Float(1365) / 4096)   // (1 + 0x155 / 1024) / 4
        #expect(TorchStateDict.halfToFloat(0x7C00) == .infinity)
        #expect(TorchStateDict.halfToFloat(0x7E00).isNaN)
        let bf16: [UInt8] = [0x80, 0x3F, 0xC0, 0xBF]                   // 1.0, -1.5
        var out = [Double](repeating: 0, count: 2)
        bf16.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { TorchStateDict.decode(b, dtype: "BF16", count: 2, into: $0.baseAddress!) } }
        #expect(out == [1, -1.5])
    }

    /// The exported names, dtypes and shapes are nn.Sequential's; a forward pass computed
    /// by hand from the file's tensors alone is what the model predicts; importing gives the
    /// same model back.
    @Test func exportedStateDictIsTheSequentials() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: Self.mlp))
        var rng = RandomGenerator(seed: 3)
        let x = (0..<(5 * 3)).map { _ in Float(rng.uniform() * 2 - 1) }
        let labels: [Int32] = [0, 1, 1, 0, 1]
        for _ in 0..<3 {
            _ = try x.withUnsafeBufferPointer { xp in
                try labels.withUnsafeBufferPointer { lp in try model.trainStep(x: xp.baseAddress!, batch: 5, targets: .labels(lp.baseAddress!)) }
            }
        }
        let dir = Self.folder()
        let path = dir + "/tiny.safetensors"
        try exportModel(model, to: path)
        let f = try SafetensorsFile(path: path)
        let want: [(String, String, [Int])] = [
            ("0.weight", "F32", [4, 3]), ("0.bias", "F32", [4]), ("1.weight", "F32", [4]), ("1.bias", "F32", [4]),
            ("1.running_mean", "F32", [4]), ("1.running_var", "F32", [4]), ("1.num_batches_tracked", "I64", []),
            ("4.weight", "F32", [2, 4]), ("4.bias", "F32", [2]),
        ]
        #expect(Set(f.entries.map(\.name)) == Set(want.map(\.0)))
        for (name, dtype, shape) in want {
            #expect(f.entry(name)?.dtype == dtype && f.entry(name)?.shape == shape, "\(name)")
        }
        #expect(f.metadata("format") == "pt")
        // Each tensor's data starts at a multiple of its element size, counted from the
        // file's start (the int64 counter comes first, then the float32 tensors).
        #expect(f.dataStart % 8 == 0)
        for e in f.entries { #expect(e.begin % Safetensors.dtypeSizes[e.dtype]! == 0, "\(e.name) at \(e.begin)") }
        #expect(f.entries.first?.name == "1.num_batches_tracked")
        func tensor(_ name: String) throws -> [Float] {
            let e = f.entry(name)!
            var v = [Float](repeating: 0, count: e.count)
            try v.withUnsafeMutableBytes { try f.read(e, into: $0.baseAddress!) }
            return v
        }
        var steps: Int64 = 0
        try withUnsafeMutableBytes(of: &steps) { try f.read(f.entry("1.num_batches_tracked")!, into: $0.baseAddress!) }
        #expect(steps == 3)
        let (w0, b0, g, beta, mean, variance, w4, b4) = (try tensor("0.weight"), try tensor("0.bias"), try tensor("1.weight"),
            try tensor("1.bias"), try tensor("1.running_mean"), try tensor("1.running_var"), try tensor("4.weight"), try tensor("4.bias"))
        #expect(mean.contains { $0 != 0 })      // training moved the running statistics
        let y = try Self.predict(model, x)
        for r in 0..<5 {
            var h = [Double](repeating: 0, count: 4)
            for j in 0..<4 {
                var v = Double(b0[j])
                for k in 0..<3 { v += Double(w0[j * 3 + k]) * Double(x[r * 3 + k]) }
                v = Double(g[j]) * (v - Double(mean[j])) / (Double(variance[j]) + 1e-5).squareRoot() + Double(beta[j])
                h[j] = max(v, 0)
            }
            for o in 0..<2 {
                var v = Double(b4[o])
                for j in 0..<4 { v += Double(w4[o * 4 + j]) * h[j] }
                #expect(abs(v - Double(y[r * 2 + o])) <= 1e-5)
            }
        }
        // The Python source beside it names the modules in order.
        let source = String(decoding: Self.read(dir + "/tiny.py"), as: UTF8.self)
        #expect(source.hasPrefix(TorchStateDict.marker))
        #expect(source.contains("nn.Linear(3, 4),  # 0") && source.contains("nn.BatchNorm1d(4, eps=1e-05, momentum=0.1),  # 1")
                && source.contains("nn.ReLU(),  # 2") && source.contains("nn.Dropout(p=0.25),  # 3") && source.contains("nn.Linear(4, 2),  # 4"))

        // Back, given the spec or from the file's own metadata: the same predictions.
        for options in [#"{"spec": \#(Self.mlp.debugDescription)}"#, nil] {
            let back = try importModel(from: path, options: options)
            #expect(try Self.predict(back, x) == y)
        }
        unlink(path)
        unlink(dir + "/tiny.py")
        rmdir(dir)
    }

    @Test func importChecksNamesShapesAndDtypes() throws {
        let dir = Self.folder()
        let spec = try SpecParser.parse(json: Self.mlp)
        let model = try makeModel(spec: spec)
        let good: [SafetensorsTensor]
        switch model {
        case let m as Model<Float>: good = try TorchStateDict.describe(m, file: "x").0
        default: Issue.record("float32 expected"); return
        }
        func attempt(_ tensors: [SafetensorsTensor]) -> DLError? {
            let path = dir + "/t.safetensors"
            Self.write(try! Safetensors.encode(tensors, metadata: []), path)
            defer { unlink(path) }
            do throws(DLError) {
                _ = try TorchStateDict.load(path: path, options: #"{"spec": \#(Self.mlp.debugDescription)}"#)
                return nil
            } catch { return error }
        }
        #expect(attempt(good) == nil)
        var t = good
        t.removeAll { $0.name == "0.bias" }
        #expect(attempt(t)?.message.contains("missing \"0.bias\"") == true)
        t = good + [SafetensorsTensor(name: "5.weight", shape: [1], values: [Float(1)])]
        #expect(attempt(t)?.message.contains("unexpected \"5.weight\"") == true)
        t = good.map { $0.name == "4.weight" ? SafetensorsTensor(name: "4.weight", shape: [4, 2], values: [Float](repeating: 0, count: 8)) : $0 }
        #expect(attempt(t)?.message.contains("\"4.weight\" has shape [4, 2], but the spec's model has [2, 4]") == true)
        t = good.map { $0.name == "0.bias" ? SafetensorsTensor(name: "0.bias", dtype: "I32", shape: [4], bytes: [UInt8](repeating: 0, count: 16)) : $0 }
        #expect(attempt(t)?.message.contains("\"0.bias\" has dtype I32") == true)
        t = good.map { $0.name == "1.num_batches_tracked" ? SafetensorsTensor(name: "1.num_batches_tracked", shape: [], values: [Float(0)]) : $0 }
        #expect(attempt(t)?.message.contains("I64 scalar") == true)
        t = good.map { $0.name == "0.bias" ? SafetensorsTensor(name: "0.bias", shape: [4], values: [Double(1), 2, 1e300, 4]) : $0 }
        #expect(attempt(t)?.message.contains("beyond float32's range") == true)
        // F16 and F64 convert.
        t = good.map { $0.name == "0.bias" ? SafetensorsTensor(name: "0.bias", dtype: "F16", shape: [4], bytes: [0, 0x3C, 0, 0xC0, 0, 0, 0, 0]) : $0 }
        #expect(attempt(t) == nil)
        // Without a spec, a file that carries none is refused, saying how to give one.
        let path = dir + "/nospec.safetensors"
        Self.write(try Safetensors.encode(good, metadata: []), path)
        #expect { _ = try importModel(from: path) } throws: { error in
            (error as? DLError)?.kind == .invalidArgument && (error as? DLError)?.message.contains("{\"spec\": ") == true
        }
        unlink(path)
        rmdir(dir)
    }

    @Test func theSourceFileIsNamedBesideAndNeverReplacesAUsersFile() throws {
        #expect(TorchStateDict.sourcePath(for: "a/model.safetensors") == "a/model.py")
        #expect(TorchStateDict.sourcePath(for: "a/.safetensors") == "a/.safetensors.py")
        #expect(TorchStateDict.sourcePath(for: "weights.bin") == "weights.bin.py")
        let dir = Self.folder()
        Self.write(Array("print('mine')\n".utf8), dir + "/net.py")
        let model = try makeModel(spec: try SpecParser.parse(json: Self.mlp))
        #expect { try exportModel(model, to: dir + "/net.safetensors") } throws: { error in
            (error as? DLError)?.message.contains("was not written by deeplearning") == true
        }
        #expect(String(decoding: Self.read(dir + "/net.py"), as: UTF8.self) == "print('mine')\n")
        #expect(access(dir + "/net.safetensors", F_OK) != 0)     // nothing written
        unlink(dir + "/net.py")
        try exportModel(model, to: dir + "/net.safetensors")    // ours is replaced
        try exportModel(model, to: dir + "/net.safetensors")
        unlink(dir + "/net.py")
        unlink(dir + "/net.safetensors")
        rmdir(dir)
    }
}
