// The C ABI of standalone layers and losses (dl_layer_*, dl_loss_*): the tutorial's
// building blocks, used one at a time by the Python bindings.
import DeepLearning

/// The dtype named by a DL_FLOAT32 / DL_FLOAT64 code.
private func dtype(_ code: Int32) throws(DLError) -> DType {
    switch code {
    case 0: return .float32
    case 1: return .float64
    default: throw .invalid("dtype must be DL_FLOAT32 (0) or DL_FLOAT64 (1), got \(code)")
    }
}

private func register<Value>(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ make: () throws(DLError) -> Box<Value>) -> Int32 {
    status { () throws(DLError) in
        let out = try required(out, "out")
        out.pointee = HandleRegistry.shared.register(try make())
    }
}

// MARK: - Layers

@_cdecl("dl_layer_from_json")
public func dl_layer_from_json(_ json: UnsafePointer<CChar>?, _ dtypeCode: Int32, _ seed: UInt64,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    register(out) { () throws(DLError) -> LayerBox in
        LayerBox(try makeStandaloneLayer(json: String(cString: try required(json, "json")), dtype: try dtype(dtypeCode), seed: seed))
    }
}

@_cdecl("dl_layer_from_json_shaped")
public func dl_layer_from_json_shaped(_ json: UnsafePointer<CChar>?, _ shape: UnsafePointer<Int>?, _ ndim: Int,
                                      _ dtypeCode: Int32, _ seed: UInt64,
                                      _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    register(out) { () throws(DLError) -> LayerBox in
        let shape = try required(shape, "shape"), ndim = try size(ndim, "ndim")
        guard (1...3).contains(ndim) else { throw .invalid("ndim must be from 1 to 3, got \(ndim)") }
        return LayerBox(try makeStandaloneLayer(json: String(cString: try required(json, "json")), dtype: try dtype(dtypeCode),
                                                seed: seed, inputShape: try dimensions(shape, ndim, "shape")))
    }
}

@_cdecl("dl_layer_output_shape")
public func dl_layer_output_shape(_ layer: OpaquePointer?, _ dims: UnsafeMutablePointer<Int>?, _ dimsLen: Int,
                                  _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let dims = try required(dims, "dims"), ndim = try required(ndim, "ndim")
        guard let shape = box.value.sampleShapes?.output else {
            throw .invalid("the \(box.value.type) layer was not built for an input shape (dl_layer_from_json_shaped)")
        }
        guard capacity(dimsLen) >= shape.count else { throw .invalid("dims has room for \(dimsLen) dimensions, the shape has \(shape.count)") }
        for (i, d) in shape.enumerated() { dims[i] = d }
        ndim.pointee = shape.count
    }
}

@_cdecl("dl_layer_free")
public func dl_layer_free(_ layer: OpaquePointer?) {
    _ = status { () throws(DLError) in try HandleRegistry.shared.free(layer, (any AnyStandaloneLayer).self, "layer") }
}

@_cdecl("dl_layer_type")
public func dl_layer_type(_ layer: OpaquePointer?, _ type: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in try required(type, "type").pointee = try box.cString(box.value.type) }
}

@_cdecl("dl_layer_output_features")
public func dl_layer_output_features(_ layer: OpaquePointer?, _ inFeatures: Int, _ outFeatures: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(outFeatures, "out_features")
        out.pointee = try box.value.outputFeatures(try size(inFeatures, "in_features"))
    }
}

@_cdecl("dl_layer_forward")
public func dl_layer_forward(_ layer: OpaquePointer?, _ x: UnsafeRawPointer?, _ rows: Int, _ cols: Int,
                             _ training: Int32, _ y: UnsafeMutableRawPointer?, _ yLen: Int) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        _ = try box.value.forward(try required(x, "x"), rows: try size(rows, "rows"), cols: try size(cols, "cols"),
                                  into: try required(y, "y"), capacity: capacity(yLen), training: training != 0)
    }
}

@_cdecl("dl_layer_backward")
public func dl_layer_backward(_ layer: OpaquePointer?, _ dy: UnsafeRawPointer?, _ rows: Int, _ cols: Int,
                              _ dx: UnsafeMutableRawPointer?, _ dxLen: Int) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        try box.value.backward(try required(dy, "dy"), rows: try size(rows, "rows"), cols: try size(cols, "cols"),
                               into: try required(dx, "dx"), capacity: capacity(dxLen))
    }
}

@_cdecl("dl_layer_num_params")
public func dl_layer_num_params(_ layer: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in try required(count, "count").pointee = box.value.parameterNames.count }
}

/// Checks an index among a standalone layer's `count` parameters or buffers (`noun`).
private func checkedIndex(_ box: LayerBox, _ index: Int, _ count: Int, _ noun: String) throws(DLError) -> Int {
    guard try size(index, "index") < count else {
        throw .invalid("\(noun) index \(index) is out of range: this \(box.value.type) layer has \(count) \(noun)s")
    }
    return index
}

private func parameterIndex(_ box: LayerBox, _ index: Int) throws(DLError) -> Int {
    try checkedIndex(box, index, box.value.parameterNames.count, "parameter")
}

/// Writes `shape` into the caller's dims (room for dimsLen) and its rank into ndim.
private func writeShape(_ shape: [Int], _ dims: UnsafeMutablePointer<Int>?, _ dimsLen: Int,
                        _ ndim: UnsafeMutablePointer<Int>?) throws(DLError) {
    let dims = try required(dims, "dims"), ndim = try required(ndim, "ndim")
    guard capacity(dimsLen) >= shape.count else { throw .invalid("dims has room for \(dimsLen) dimensions, needs \(shape.count)") }
    for (i, d) in shape.enumerated() { dims[i] = d }
    ndim.pointee = shape.count
}

@_cdecl("dl_layer_param_name")
public func dl_layer_param_name(_ layer: OpaquePointer?, _ index: Int, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(name, "name")
        out.pointee = try box.cString(box.value.parameterNames[try parameterIndex(box, index)])
    }
}

@_cdecl("dl_layer_param_shape")
public func dl_layer_param_shape(_ layer: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?,
                                 _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        try writeShape(box.value.parameterShapes[try parameterIndex(box, index)], dims, dimsLen, ndim)
    }
}

@_cdecl("dl_layer_param_data")
public func dl_layer_param_data(_ layer: OpaquePointer?, _ index: Int, _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(data, "data")
        out.pointee = box.value.parameterData(try parameterIndex(box, index))
    }
}

@_cdecl("dl_layer_grad_data")
public func dl_layer_grad_data(_ layer: OpaquePointer?, _ index: Int, _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(data, "data")
        out.pointee = box.value.gradientData(try parameterIndex(box, index))
    }
}

private func bufferIndex(_ box: LayerBox, _ index: Int) throws(DLError) -> Int {
    try checkedIndex(box, index, box.value.bufferNames.count, "buffer")
}

@_cdecl("dl_layer_num_buffers")
public func dl_layer_num_buffers(_ layer: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in try required(count, "count").pointee = box.value.bufferNames.count }
}

@_cdecl("dl_layer_buffer_name")
public func dl_layer_buffer_name(_ layer: OpaquePointer?, _ index: Int, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(name, "name")
        out.pointee = try box.cString(box.value.bufferNames[try bufferIndex(box, index)])
    }
}

@_cdecl("dl_layer_buffer_shape")
public func dl_layer_buffer_shape(_ layer: OpaquePointer?, _ index: Int, _ dims: UnsafeMutablePointer<Int>?,
                                  _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        try writeShape(box.value.bufferShapes[try bufferIndex(box, index)], dims, dimsLen, ndim)
    }
}

@_cdecl("dl_layer_buffer_data")
public func dl_layer_buffer_data(_ layer: OpaquePointer?, _ index: Int, _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    withLayer(layer) { (box) throws(DLError) in
        let out = try required(data, "data")
        out.pointee = box.value.bufferData(try bufferIndex(box, index))
    }
}

// MARK: - Losses

@_cdecl("dl_loss_from_json")
public func dl_loss_from_json(_ json: UnsafePointer<CChar>?, _ dtypeCode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    register(out) { () throws(DLError) -> LossBox in
        LossBox(try makeStandaloneLoss(json: String(cString: try required(json, "json")), dtype: try dtype(dtypeCode)))
    }
}

@_cdecl("dl_loss_free")
public func dl_loss_free(_ loss: OpaquePointer?) {
    _ = status { () throws(DLError) in try HandleRegistry.shared.free(loss, (any AnyStandaloneLoss).self, "loss") }
}

@_cdecl("dl_loss_forward")
public func dl_loss_forward(_ loss: OpaquePointer?, _ pred: UnsafeRawPointer?, _ rows: Int, _ cols: Int,
                            _ labels: UnsafePointer<Int32>?, _ targets: UnsafeRawPointer?,
                            _ value: UnsafeMutablePointer<Double>?) -> Int32 {
    withLoss(loss) { (box) throws(DLError) in
        let out = try required(value, "value")
        out.pointee = try box.value.forward(try required(pred, "pred"), rows: try size(rows, "rows"), cols: try size(cols, "cols"),
                                            labels: labels, targets: targets)
    }
}

@_cdecl("dl_loss_backward")
public func dl_loss_backward(_ loss: OpaquePointer?, _ grad: UnsafeMutableRawPointer?, _ gradLen: Int) -> Int32 {
    withLoss(loss) { (box) throws(DLError) in
        try box.value.backward(into: try required(grad, "grad"), capacity: capacity(gradLen))
    }
}
