// The C ABI: every function declared in Include/deeplearning.h, and nothing else.
//
// Each export validates its arguments, runs the core inside `status`/`withModel`, and
// turns any DLError into a status code plus this thread's message. Nothing here may trap:
// no force unwraps, no unchecked arithmetic on caller sizes (size_t arrives as Int, so
// values above Int.max look negative and are refused as such).
import CDeepLearningSupport
import DeepLearning

// MARK: - Version and messages

@_cdecl("dl_version_number")
public func dl_version_number() -> Int32 { Int32(Version.number) }

@_cdecl("dl_version")
public func dl_version() -> UnsafePointer<CChar> { staticCString(Version.string) }

@_cdecl("dl_set_num_threads")
public func dl_set_num_threads(_ n: Int32) { Kernels.threads = Int(n) }

@_cdecl("dl_get_num_threads")
public func dl_get_num_threads() -> Int32 { Int32(Kernels.threads) }

@_cdecl("dl_status_string")
public func dl_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    let text: StaticString
    switch status {
    case 0: text = "ok"
    case 1: text = "internal error"
    case 2: text = "invalid argument"
    case 3: text = "invalid model spec"
    case 4: text = "input/output error"
    case 5: text = "bad file format"
    case 6: text = "out of memory or over a size limit"
    case 7: text = "NaN or infinity"
    case 8: text = "unsupported for this model"
    case 9: text = "model busy in another thread"
    case 10: text = "cancelled by a progress callback"
    default: text = "unknown status"
    }
    return staticCString(text)
}

@_cdecl("dl_last_error")
public func dl_last_error() -> UnsafePointer<CChar> { dlx_last_error() }

private func staticCString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

// MARK: - Models

private func create(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ make: () throws(DLError) -> any AnyModel) -> Int32 {
    status { () throws(DLError) in
        let out = try required(out, "out")
        out.pointee = HandleRegistry.shared.register(ModelBox(try make()))
    }
}

@_cdecl("dl_model_from_spec")
public func dl_model_from_spec(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    create(out) { () throws(DLError) in
        try makeModel(spec: try SpecParser.parse(file: String(cString: try required(path, "path"))))
    }
}

@_cdecl("dl_model_from_json")
public func dl_model_from_json(_ json: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    create(out) { () throws(DLError) in
        try makeModel(spec: try SpecParser.parse(json: String(cString: try required(json, "json"))))
    }
}

@_cdecl("dl_model_clone")
public func dl_model_clone(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    var copy: (any AnyModel)?
    let rc = withModel(model) { (box) throws(DLError) in
        _ = try required(out, "out")
        copy = try box.value.clone()
    }
    if rc == 0, let copy, let out { out.pointee = HandleRegistry.shared.register(ModelBox(copy)) }
    return rc
}

@_cdecl("dl_model_free")
public func dl_model_free(_ model: OpaquePointer?) {
    _ = status { () throws(DLError) in try HandleRegistry.shared.free(model, (any AnyModel).self, "model") }
}

// MARK: - Checkpoints

@_cdecl("dl_model_save")
public func dl_model_save(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try box.value.save(to: String(cString: try required(path, "path")))
    }
}

@_cdecl("dl_model_load")
public func dl_model_load(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    create(out) { () throws(DLError) in try loadModel(from: String(cString: try required(path, "path"))) }
}

// MARK: - Training and inference

@_cdecl("dl_train_step")
public func dl_train_step(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int,
                          _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?,
                          _ loss: UnsafeMutablePointer<Double>?) -> Int32 {
    dlx_set_accuracy(.nan)
    return withModel(model) { (box) throws(DLError) in
        let before = box.value.samplesSeen
        let value = try box.value.trainStep(x: try required(x, "x"), batch: try size(batch, "batch"), targets: try batchTargets(labels, targets))
        loss?.pointee = value
        // The step's samples: `batch`, or with a gradient reducer every rank's.
        let samples = box.value.samplesSeen - before
        dlx_set_accuracy(box.value.lastStepCorrect.map { Double($0) / Double(max(samples, 1)) } ?? .nan)
    }
}

@_cdecl("dl_last_accuracy")
public func dl_last_accuracy() -> Double {
    dlx_accuracy()
}

/// Checks that a caller's output buffer holds `count * perSample` elements.
private func checkCapacity(_ count: Int, _ perSample: Int, _ capacity: Int, _ name: String) throws(DLError) {
    guard count >= 1 else { throw .invalid("count must be at least 1, got \(count)") }
    let (needed, overflow) = count.multipliedReportingOverflow(by: perSample)
    guard !overflow, capacity >= needed else {
        throw .invalid("\(name) has room for \(capacity) values but \(count) samples need \(overflow ? "more than Int.max" : String(needed))")
    }
}

@_cdecl("dl_predict")
public func dl_predict(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ count: Int,
                       _ out: UnsafeMutablePointer<Float>?, _ outLen: Int) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let x = try required(x, "x"), out = try required(out, "out")
        try checkCapacity(try size(count, "count"), box.value.outputSize, capacity(outLen), "out")
        try box.value.predict(x: x, count: count, into: out)
    }
}

@_cdecl("dl_predict_classes")
public func dl_predict_classes(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ count: Int,
                               _ out: UnsafeMutablePointer<Int32>?, _ outLen: Int) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let x = try required(x, "x"), out = try required(out, "out")
        try checkCapacity(try size(count, "count"), 1, capacity(outLen), "out")
        try box.value.predictClasses(x: x, count: count, into: out)
    }
}

@_cdecl("dl_evaluate")
public func dl_evaluate(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ count: Int,
                        _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?,
                        _ loss: UnsafeMutablePointer<Double>?, _ accuracy: UnsafeMutablePointer<Double>?) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let result = try box.value.evaluate(x: try required(x, "x"), count: try size(count, "count"), targets: try batchTargets(labels, targets))
        loss?.pointee = result.loss
        accuracy?.pointee = result.accuracy ?? .nan
    }
}

@_cdecl("dl_gradcheck")
public func dl_gradcheck(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int,
                         _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?,
                         _ maxEntries: Int, _ maxRelError: UnsafeMutablePointer<Double>?,
                         _ perParam: UnsafeMutablePointer<Double>?, _ perParamLen: Int) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        let x = try required(x, "x"), maxRelError = try required(maxRelError, "max_rel_error")
        let limit = maxEntries < 0 ? 0 : maxEntries   // above Int.max: as good as "all"
        let tensors = box.value.parameterNames.count
        if perParam != nil && capacity(perParamLen) < tensors {
            throw .invalid("per_param has room for \(perParamLen) values but the model has \(tensors) parameter tensors")
        }
        let entries = try box.value.gradientCheck(x: x, batch: try size(batch, "batch"), targets: try batchTargets(labels, targets),
                                                  limit: limit, tolerance: .standard)
        maxRelError.pointee = entries.map(\.relativeError).max() ?? 0
        if let perParam { for (i, e) in entries.enumerated() { perParam[i] = e.relativeError } }
    }
}

// MARK: - Gradient check with a per-parameter report (robust-numeric)

@_cdecl("dl_gradcheck_report")
public func dl_gradcheck_report(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int,
                                _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?,
                                _ maxEntries: Int, _ atol: Double, _ rtol: Double,
                                _ absError: UnsafeMutablePointer<Double>?, _ relError: UnsafeMutablePointer<Double>?,
                                _ score: UnsafeMutablePointer<Double>?, _ len: Int,
                                _ passed: UnsafeMutablePointer<Int32>?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        let x = try required(x, "x"), passed = try required(passed, "passed")
        let tolerance = try GradientCheck.Tolerance(absolute: atol, relative: rtol)
        let tensors = box.value.parameterNames.count
        if (absError != nil || relError != nil || score != nil) && capacity(len) < tensors {
            throw .invalid("the per-parameter arrays have room for \(len) values but the model has \(tensors) parameter tensors")
        }
        let entries = try box.value.gradientCheck(x: x, batch: try size(batch, "batch"), targets: try batchTargets(labels, targets),
                                                  limit: maxEntries < 0 ? 0 : maxEntries, tolerance: tolerance)
        for (i, e) in entries.enumerated() {
            absError?[i] = e.maxAbsoluteDifference
            relError?[i] = e.relativeError
            score?[i] = e.score
        }
        passed.pointee = entries.allSatisfy(\.passed) ? 1 : 0
    }
}

@_cdecl("dl_model_get_learning_rate")
public func dl_model_get_learning_rate(_ model: OpaquePointer?, _ lr: UnsafeMutablePointer<Double>?) -> Int32 {
    readingModel(model) { (box) throws(DLError) in try required(lr, "lr").pointee = box.value.learningRate }
}

@_cdecl("dl_model_set_learning_rate")
public func dl_model_set_learning_rate(_ model: OpaquePointer?, _ lr: Double) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        // The range the spec parser and dl_model_load accept, so that every model saved loads.
        guard lr.isFinite, lr >= 0, lr <= Checkpoint.maxLearningRate else {
            throw .invalid("learning rate must be a number from 0 to \(Checkpoint.maxLearningRate), got \(lr)")
        }
        box.value.learningRate = lr
    }
}

@_cdecl("dl_model_set_preprocessing")
public func dl_model_set_preprocessing(_ model: OpaquePointer?, _ scale: Double, _ mean: Double, _ std: Double) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try box.value.setPreprocessing(Preprocessing(scale: scale, mean: mean, std: std))
    }
}

@_cdecl("dl_model_get_preprocessing")
public func dl_model_get_preprocessing(_ model: OpaquePointer?, _ scale: UnsafeMutablePointer<Double>?,
                                       _ mean: UnsafeMutablePointer<Double>?, _ std: UnsafeMutablePointer<Double>?) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let p = box.value.spec.preprocessing
        scale?.pointee = p.scale
        mean?.pointee = p.mean
        std?.pointee = p.std
    }
}

// MARK: - Introspection

/// Writes a model property to a non-NULL OUT pointer.
private func property<V>(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<V>?, _ name: String,
                         _ get: (any AnyModel) -> V) -> Int32 {
    readingModel(model) { (box) throws(DLError) in try required(out, name).pointee = get(box.value) }
}

/// Checks an index into a list of `count` things.
private func checkIndex(_ index: Int, _ count: Int, _ what: String) throws(DLError) {
    guard try size(index, "index") < count else {
        throw .invalid("\(what) index \(index) is out of range: the model has \(count)")
    }
}

@_cdecl("dl_model_input_size")
public func dl_model_input_size(_ model: OpaquePointer?, _ size: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, size, "size") { $0.inputSize }
}

@_cdecl("dl_model_output_size")
public func dl_model_output_size(_ model: OpaquePointer?, _ size: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, size, "size") { $0.outputSize }
}

@_cdecl("dl_model_param_count")
public func dl_model_param_count(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, count, "count") { $0.parameterCount }
}

@_cdecl("dl_model_num_params")
public func dl_model_num_params(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, count, "count") { $0.parameterNames.count }
}

@_cdecl("dl_model_num_layers")
public func dl_model_num_layers(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, count, "count") { $0.layerTypes.count }
}

@_cdecl("dl_model_step_count")
public func dl_model_step_count(_ model: OpaquePointer?, _ steps: UnsafeMutablePointer<UInt64>?) -> Int32 {
    property(model, steps, "steps") { UInt64(clamping: $0.stepCount) }
}

/// Element `index` of a list of the model's names, as a C string the model owns.
private func name(_ model: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                  _ outName: String, _ noun: String, _ list: (any AnyModel) -> [String]) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        let out = try required(out, outName)
        let names = list(box.value)
        try checkIndex(index, names.count, noun)
        out.pointee = try box.cString(names[index])
    }
}

@_cdecl("dl_model_param_name")
public func dl_model_param_name(_ model: OpaquePointer?, _ index: Int, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    DeepLearningC.name(model, index, name, "name", "parameter") { $0.parameterNames }
}

@_cdecl("dl_model_layer_type")
public func dl_model_layer_type(_ model: OpaquePointer?, _ index: Int, _ type: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    name(model, index, type, "type", "layer") { $0.layerTypes }
}

@_cdecl("dl_model_spec_json")
public func dl_model_spec_json(_ model: OpaquePointer?, _ json: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try required(json, "json").pointee = try box.cString(box.value.spec.json)
    }
}

/// Writes `shapes[index]` to `dims` and its length to `ndim`; `names` names it in messages.
private func shape(_ model: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?, _ dimsLen: Int,
                   _ ndim: UnsafeMutablePointer<Int>?, _ noun: String,
                   _ list: (any AnyModel) -> (names: [String], shapes: [[Int]])) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let dims = try required(dims, "dims"), ndim = try required(ndim, "ndim")
        let (names, shapes) = list(box.value)
        try checkIndex(index, shapes.count, noun)
        let shape = shapes[index]
        guard capacity(dimsLen) >= shape.count else {
            throw .invalid("dims has room for \(dimsLen) dimensions but \(names[index]) has \(shape.count)")
        }
        for (i, d) in shape.enumerated() { dims[i] = d }
        ndim.pointee = shape.count
    }
}

@_cdecl("dl_model_param_shape")
public func dl_model_param_shape(_ model: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?,
                                 _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    shape(model, index, dims, dimsLen, ndim, "parameter") { ($0.parameterNames, $0.parameterShapes) }
}

@_cdecl("dl_model_layer_output_shape")
public func dl_model_layer_output_shape(_ model: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?,
                                        _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    shape(model, index, dims, dimsLen, ndim, "layer") { model in
        (model.layerTypes.enumerated().map { "layer \($0.offset) (\($0.element))" }, model.layerOutputShapes)
    }
}

@_cdecl("dl_model_num_buffers")
public func dl_model_num_buffers(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    property(model, count, "count") { $0.bufferNames.count }
}

@_cdecl("dl_model_buffer_name")
public func dl_model_buffer_name(_ model: OpaquePointer?, _ index: Int, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    DeepLearningC.name(model, index, name, "name", "buffer") { $0.bufferNames }
}

@_cdecl("dl_model_buffer_shape")
public func dl_model_buffer_shape(_ model: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?,
                                  _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    shape(model, index, dims, dimsLen, ndim, "buffer") { ($0.bufferNames, $0.bufferShapes) }
}

@_cdecl("dl_model_get_buffer")
public func dl_model_get_buffer(_ model: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<Float>?, _ len: Int) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        try box.value.readBuffer(try size(index, "index"), into: try required(out, "out"), count: try size(len, "len"))
    }
}

@_cdecl("dl_model_set_buffer")
public func dl_model_set_buffer(_ model: OpaquePointer?, _ index: Int, _ values: UnsafePointer<Float>?, _ len: Int) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try box.value.writeBuffer(try size(index, "index"), from: try required(values, "values"), count: try size(len, "len"))
    }
}

@_cdecl("dl_model_get_param")
public func dl_model_get_param(_ model: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<Float>?, _ len: Int) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        try box.value.readParameter(try size(index, "index"), into: try required(out, "out"), count: try size(len, "len"))
    }
}

@_cdecl("dl_model_set_param")
public func dl_model_set_param(_ model: OpaquePointer?, _ index: Int, _ values: UnsafePointer<Float>?, _ len: Int) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try box.value.writeParameter(try size(index, "index"), from: try required(values, "values"), count: try size(len, "len"))
    }
}

// MARK: - Model files in other formats (ONNX)

@_cdecl("dl_model_export")
public func dl_model_export(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ format: UnsafePointer<CChar>?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        try exportModel(box.value, to: String(cString: try required(path, "path")), format: format.map { String(cString: $0) })
    }
}

@_cdecl("dl_model_import")
public func dl_model_import(_ path: UnsafePointer<CChar>?, _ format: UnsafePointer<CChar>?,
                            _ options: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    create(out) { () throws(DLError) in
        try importModel(from: String(cString: try required(path, "path")), format: format.map { String(cString: $0) },
                        options: options.map { String(cString: $0) })
    }
}
