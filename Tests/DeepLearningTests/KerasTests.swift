import Glibc
import Testing
@testable import DeepLearning

/// Keras import and export in the core, without Keras: the config mapping, the layout
/// conversions against the maths, and damaged files. Keras itself checks the files in
/// bindings/python/tests/test_keras.py.
@Suite struct KerasTests {
    static func temporary(_ name: String) -> String {
        "\(String(cString: getenv("TMPDIR") ?? strdup("/tmp")))/dl-keras-test-\(getpid())-\(name)"
    }

    /// A `.keras` archive written by hand: `config` as config.json, and `weights`
    /// (layer name in the archive, arrays with their shapes) as model.weights.h5.
    static func archive(_ name: String, config: String, weights: [(String, [([Int], [Float])])]) throws -> String {
        let h5 = temporary(name + ".weights.h5")
        defer { unlink(h5) }
        try HDF5File.locked { () throws(DLError) in
            let file = try HDF5File.create(h5)
            try file.createGroup("layers")
            for (layer, arrays) in weights {
                try file.createGroup("layers/\(layer)")
                try file.createGroup("layers/\(layer)/vars")
                for (i, (shape, values)) in arrays.enumerated() {
                    try values.withUnsafeBufferPointer { (p) throws(DLError) in
                        try file.write("layers/\(layer)/vars/\(i)", shape: shape, p.baseAddress!)
                    }
                }
            }
            file.close()
        }
        let path = temporary(name)
        let zip = try ZipWriter(path: path)
        try zip.add("config.json", bytes: Array(config.utf8))
        try zip.add("model.weights.h5", file: h5)
        try zip.finish()
        return path
    }

    static func sequential(_ input: [Int], _ layers: [String]) -> String {
        let shape = (["null"] + input.map(String.init)).joined(separator: ", ")
        return """
            {"class_name": "Sequential", "config": {"name": "seq", "layers": [
              {"class_name": "InputLayer", "config": {"batch_shape": [\(shape)], "name": "input_layer"}},
              \(layers.joined(separator: ",\n"))]}}
            """
    }

    @Test func channelsLastFlattenReordersTheDenseRows() throws {
        // (H, W, C) = (2, 3, 2): Keras's Dense after Flatten reads x[y, x, c] at (y W + x) C + c.
        let (h, w, c) = (2, 3, 2)
        let config = Self.sequential([h, w, c], [
            #"{"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 2, "kernel_size": [1, 1], "use_bias": false}}"#,
            #"{"class_name": "Flatten", "config": {"name": "flatten"}}"#,
            #"{"class_name": "Dense", "config": {"name": "dense", "units": 1, "use_bias": false}}"#,
        ])
        // The 1x1 conv is the identity on the channels: kernel (1, 1, in, out) = I.
        let kernel: [Float] = [1, 0, 0, 1]
        let dense = (0..<(h * w * c)).map { Float($0 + 1) }
        let path = try Self.archive("reorder.keras", config: config, weights: [
            ("conv2d", [([1, 1, c, c], kernel)]), ("dense", [([h * w * c, 1], dense)])])
        defer { unlink(path) }
        let model = try KerasImport.loadArchive(path: path)
        #expect(model.inputShape == [c, h, w])
        var rng = RandomGenerator(seed: 3)
        let hwc = (0..<(h * w * c)).map { _ in Float(rng.uniform()) }
        var chw = [Float](repeating: 0, count: hwc.count)
        var want: Double = 0
        for y in 0..<h { for x in 0..<w { for ch in 0..<c {
            chw[(ch * h + y) * w + x] = hwc[(y * w + x) * c + ch]
            want += Double(hwc[(y * w + x) * c + ch]) * Double(dense[(y * w + x) * c + ch])
        } } }
        let got = try ONNXTests.predict(model, chw)
        #expect(abs(Double(got[0]) - want) < 1e-4)
    }

    @Test func convKernelLayoutsAgreeWithTheMaths() {
        let (kh, kw, i, o) = (2, 3, 2, 4)
        let keras = (0..<(kh * kw * i * o)).map { Float($0) }
        let ours = kerasKernelToOurs(keras, kh: kh, kw: kw, inputs: i, filters: o)
        for y in 0..<kh { for x in 0..<kw { for a in 0..<i { for b in 0..<o {
            #expect(ours[((b * i + a) * kh + y) * kw + x] == keras[((y * kw + x) * i + a) * o + b])
        } } } }
        #expect(ourKernelToKeras(ours, kh: kh, kw: kw, inputs: i, filters: o) == keras)
        let weight = (0..<(3 * 24)).map { Float($0) }
        let there = reorderChannelsLastColumns(weight, chw: [2, 3, 4], inverse: true)!
        #expect(reorderChannelsLastColumns(there, chw: [2, 3, 4]) == weight)
        #expect(reorderChannelsLastColumns(weight, chw: [5, 3, 4]) == nil)
    }

    @Test func snakeCaseIsKerasNaming() {
        #expect(KerasConfigMapper.snakeCase("Conv2D") == "conv2d")
        #expect(KerasConfigMapper.snakeCase("BatchNormalization") == "batch_normalization")
        #expect(KerasConfigMapper.snakeCase("MaxPooling2D") == "max_pooling2d")
        #expect(KerasConfigMapper.snakeCase("LeakyReLU") == "leaky_re_lu")
        #expect(KerasConfigMapper.snakeCase("ELU") == "elu")
    }

    @Test func samePaddingMapsOrIsRefused() throws {
        func translate(_ layer: String, _ input: [Int] = [8, 8, 1]) throws -> KerasTranslation {
            try KerasImport.translate(config: Array(Self.sequential(input, [layer, #"{"class_name": "Flatten", "config": {}}"#,
                                                                             #"{"class_name": "Dense", "config": {"name": "d", "units": 2}}"#]).utf8),
                                      source: "test")
        }
        // Odd kernel, stride 1: (k - 1) / 2 each side.
        var t = try translate(#"{"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 5, "padding": "same"}}"#)
        #expect(t.spec.contains(#""padding":[2,2]"#))
        // Stride 2, kernel 2 on 8: out 4, (4 - 1) 2 + 2 - 8 = 0.
        t = try translate(#"{"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 2, "strides": 2, "padding": "same"}}"#)
        #expect(t.spec.contains(#""padding":[0,0]"#))
        // Even kernel, stride 1: 3 values, 1 before and 2 after: refused, naming the layer.
        #expect {
            _ = try translate(#"{"class_name": "Conv2D", "config": {"name": "c4", "filters": 2, "kernel_size": 4, "padding": "same"}}"#)
        } throws: { error in
            let e = error as! DLError
            return e.kind == .unsupported && e.message.contains("\"c4\"") && e.message.contains("same") && e.message.contains("unevenly")
        }
    }

    @Test func refusalsNameTheLayerAndTheOption() throws {
        let cases: [(String, [String])] = [
            (#"{"class_name": "Conv2D", "config": {"name": "dil", "filters": 2, "kernel_size": 3, "dilation_rate": 2}}"#, ["dil", "dilation_rate"]),
            (#"{"class_name": "LSTM", "config": {"name": "rnn", "units": 3}}"#, ["rnn", "LSTM"]),
            (#"{"class_name": "Conv2D", "config": {"name": "reg", "filters": 2, "kernel_size": 3, "kernel_regularizer": {"class_name": "L2"}}}"#, ["reg", "kernel_regularizer"]),
            (#"{"class_name": "Activation", "config": {"name": "act", "activation": "relu6"}}"#, ["act", "relu6"]),
            (#"{"class_name": "Conv2D", "config": {"name": "half", "filters": 2, "kernel_size": 3, "dtype": "mixed_float16"}}"#, ["half", "mixed_float16"]),
        ]
        for (layer, words) in cases {
            let config = Self.sequential([8, 8, 1], [layer])
            do {
                _ = try KerasImport.translate(config: Array(config.utf8), source: "test")
                Issue.record("accepted: \(layer)")
            } catch {
                #expect(error.kind == .unsupported)
                for word in words { #expect(error.message.contains(word), "\(error.message)") }
            }
        }
        // Not a model config at all.
        for bad in ["[]", "{}", #"{"class_name": "Sequential"}"#, #"{"class_name": "Sequential", "config": {"layers": 3}}"#, "{\"class_name\": "] {
            #expect(throws: DLError.self) { _ = try KerasImport.translate(config: Array(bad.utf8), source: "bad") }
        }
    }

    @Test func exportedArchiveAndLegacyFileComeBackTheSame() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: ONNXTests.cnn))
        try model.setPreprocessing(Preprocessing(scale: 0.5, mean: 0.1, std: 2))
        var rng = RandomGenerator(seed: 4)
        let x = (0..<(4 * 25)).map { _ in Float(rng.uniform()) }
        let labels: [Int32] = [0, 1, 2, 1]
        for _ in 0..<2 {
            _ = try x.withUnsafeBufferPointer { xp in
                try labels.withUnsafeBufferPointer { lp in try model.trainStep(x: xp.baseAddress!, batch: 4, targets: .labels(lp.baseAddress!)) }
            }
        }
        let want = try ONNXTests.predict(model, x)
        for (name, format) in [("cnn.keras", "keras"), ("cnn_keras.h5", "keras_h5")] {
            let path = Self.temporary(name)
            defer { unlink(path) }
            try exportModel(model, to: path, format: format)
            #expect(try ModelFormat.resolve(nil, path: path, reading: true) == (format == "keras" ? .keras : .kerasH5))
            let back = try importModel(from: path)
            #expect(back.layerTypes == model.layerTypes)
            #expect(back.spec.preprocessing.multiplier == model.spec.preprocessing.multiplier || format == "keras")
            let got = try ONNXTests.predict(back, x)
            #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-5 })
        }
        // A .h5 checkpoint of ours is not taken for Keras's.
        let ours = Self.temporary("ours.h5")
        defer { unlink(ours) }
        try model.save(to: ours)
        #expect(try ModelFormat.resolve(nil, path: ours, reading: true) == .h5)
    }

    @Test func damagedArchivesAreClearErrors() throws {
        let model = try makeModel(spec: try SpecParser.parse(json: ONNXTests.cnn))
        let path = Self.temporary("whole.keras"), cut = Self.temporary("cut.keras")
        defer { unlink(path); unlink(cut) }
        try exportModel(model, to: path)
        let bytes = try SpecParser.readFile(path)
        for n in [0, 4, 100, bytes.count / 2, bytes.count - 1] {
            let f = fopen(cut, "wb")!
            _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, n, f) }
            fclose(f)
            #expect {
                _ = try importModel(from: cut)
            } throws: { error in
                (error as! DLError).kind == .format
            }
        }
    }
}
