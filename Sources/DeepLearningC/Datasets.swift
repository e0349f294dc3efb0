// The C ABI of data sets (dl_dataset_*): the core's loaders, read-only access to what they
// loaded, and training and evaluation of a model on a whole data set.
import DeepLearning

// MARK: - Loading

/// Runs a loader and hands the new data set out through `out`.
private func load(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ loader: () throws(DLError) -> Dataset) -> Int32 {
    status { () throws(DLError) in
        let out = try required(out, "out")
        out.pointee = HandleRegistry.shared.register(DatasetBox(try loader()))
    }
}

@_cdecl("dl_dataset_load_idx")
public func dl_dataset_load_idx(_ images: UnsafePointer<CChar>?, _ labels: UnsafePointer<CChar>?,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in
        try Dataset.loadIDX(images: String(cString: try required(images, "images")), labels: labels.map { String(cString: $0) })
    }
}

@_cdecl("dl_dataset_load_mnist")
public func dl_dataset_load_mnist(_ directory: UnsafePointer<CChar>?, _ split: Int32,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in
        let directory = String(cString: try required(directory, "directory"))
        switch split {
        case 0: return try Dataset.loadMNIST(directory: directory, split: .train)
        case 1: return try Dataset.loadMNIST(directory: directory, split: .test)
        default: throw .invalid("split must be DL_SPLIT_TRAIN (0) or DL_SPLIT_TEST (1), got \(split)")
        }
    }
}

@_cdecl("dl_dataset_load_csv")
public func dl_dataset_load_csv(_ path: UnsafePointer<CChar>?, _ featureCount: Int,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in
        let path = String(cString: try required(path, "path"))
        let n = try size(featureCount, "feature_count")
        return try Dataset.loadCSV(path, featureCount: n == 0 ? nil : n)
    }
}

@_cdecl("dl_dataset_load_csv_targets")
public func dl_dataset_load_csv_targets(_ path: UnsafePointer<CChar>?, _ featureCount: Int, _ targetCount: Int,
                                        _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in
        let path = String(cString: try required(path, "path"))
        let n = try size(featureCount, "feature_count"), k = try size(targetCount, "target_count")
        guard k >= 1 else { throw .invalid("target_count must be at least 1, got 0") }
        return try Dataset.loadCSV(path, featureCount: n == 0 ? nil : n, targetCount: k)
    }
}

@_cdecl("dl_dataset_from_arrays")
public func dl_dataset_from_arrays(_ x: UnsafePointer<Float>?, _ count: Int, _ shape: UnsafePointer<Int>?, _ ndim: Int,
                                   _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?, _ targetSize: Int,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in
        try datasetFromArrays(x, count, shape, ndim, labels, targets, targetSize) { (x, targets, sampleShape) throws(DLError) in
            try checkAllocation(x.count, of: Float.self, "x of \(count) samples")
            return try Dataset(features: Array(x), targets: targets, sampleShape: sampleShape)
        }
    }
}

/// The release callback of `dl_dataset_borrow_arrays`, with its argument.
private struct Release: @unchecked Sendable {
    // @unchecked: the caller's function and pointer, called once, from whichever thread
    // frees the last copy of the data set (the header says so).
    let function: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let userData: UnsafeMutableRawPointer?
    func callAsFunction() { function(userData) }
}

@_cdecl("dl_dataset_borrow_arrays")
public func dl_dataset_borrow_arrays(_ x: UnsafePointer<Float>?, _ count: Int, _ shape: UnsafePointer<Int>?, _ ndim: Int,
                                     _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?, _ targetSize: Int,
                                     _ release: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
                                     _ userData: UnsafeMutableRawPointer?,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    // Made first, so that every way out, failures included, releases x exactly once.
    var onRelease: (@Sendable () -> Void)? = nil
    if let release {
        let releaser = Release(function: release, userData: userData)
        onRelease = { @Sendable in releaser() }
    }
    var handedOver = false
    defer { if !handedOver { onRelease?() } }
    return load(out) { () throws(DLError) -> Dataset in
        try datasetFromArrays(x, count, shape, ndim, labels, targets, targetSize) {
            (x: UnsafeBufferPointer<Float>, targets: Dataset.Targets, sampleShape: [Int]) throws(DLError) -> Dataset in
            handedOver = true       // from here the data set's storage calls it, also if init throws
            return try Dataset(borrowing: x, targets: targets, sampleShape: sampleShape, release: onRelease)
        }
    }
}

/// The checks and copies `dl_dataset_from_arrays` and `dl_dataset_borrow_arrays` share:
/// every argument, x finite; labels or targets copied. `make` builds the set from x.
private func datasetFromArrays(_ x: UnsafePointer<Float>?, _ count: Int, _ shape: UnsafePointer<Int>?, _ ndim: Int,
                               _ labels: UnsafePointer<Int32>?, _ targets: UnsafePointer<Float>?, _ targetSize: Int,
                               _ make: (UnsafeBufferPointer<Float>, Dataset.Targets, [Int]) throws(DLError) -> Dataset)
    throws(DLError) -> Dataset {
    let x = try required(x, "x"), shape = try required(shape, "shape")
    let count = try size(count, "count"), ndim = try size(ndim, "ndim"), width = try size(targetSize, "target_size")
    guard count >= 1 else { throw .invalid("count must be at least 1, got 0") }
    guard (1...32).contains(ndim) else { throw .invalid("ndim must be from 1 to 32, got \(ndim)") }
    let sampleShape = try dimensions(shape, ndim, "shape")
    guard sampleShape.allSatisfy({ $0 > 0 }) else { throw .invalid("shape \(sampleShape) has a zero (or too large) dimension") }
    let features = UnsafeBufferPointer(start: x, count: try checkedProduct(count, try checkedCount(sampleShape, "sample shape"), "x"))
    guard Kernels.allFinite(x, features.count) else { throw DLError(.numeric, "x contains NaN or infinite values") }
    let data: Dataset.Targets
    switch (labels, targets) {
    case (nil, nil):
        guard width == 0 else { throw .invalid("target_size is \(width) but targets is NULL") }
        data = .none
    case (let l?, nil):
        guard width == 0 else { throw .invalid("target_size must be 0 with labels, got \(width)") }
        try checkAllocation(count, of: Int32.self, "labels of \(count) samples")
        data = .labels(Array(UnsafeBufferPointer(start: l, count: count)))
    case (nil, let t?):
        guard width >= 1 else { throw .invalid("target_size must be at least 1 with targets, got 0") }
        let m = try checkedProduct(count, width, "targets")
        try checkAllocation(m, of: Float.self, "targets of \(count) samples")
        guard Kernels.allFinite(t, m) else { throw DLError(.numeric, "targets contain NaN or infinite values") }
        data = .values(Array(UnsafeBufferPointer(start: t, count: m)), size: width)
    case (_?, _?):
        throw .invalid("labels and targets are both given; pass at most one of them")
    }
    return try make(features, data, sampleShape)
}

@_cdecl("dl_dataset_load_hdf5")
public func dl_dataset_load_hdf5(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(out) { () throws(DLError) in try Dataset.loadHDF5(String(cString: try required(path, "path"))) }
}

@_cdecl("dl_dataset_free")
public func dl_dataset_free(_ dataset: OpaquePointer?) {
    _ = status { () throws(DLError) in try HandleRegistry.shared.free(dataset, Dataset.self, "dataset") }
}

// MARK: - Contents

@_cdecl("dl_dataset_info")
public func dl_dataset_info(_ dataset: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?,
                            _ featureSize: UnsafeMutablePointer<Int>?, _ hasLabels: UnsafeMutablePointer<Int32>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        count?.pointee = box.value.count
        featureSize?.pointee = box.value.featureSize
        hasLabels?.pointee = box.value.isLabelled ? 1 : 0
    }
}

@_cdecl("dl_dataset_sample_shape")
public func dl_dataset_sample_shape(_ dataset: OpaquePointer?, _ dims: UnsafeMutablePointer<Int>?,
                                    _ dimsLen: Int, _ ndim: UnsafeMutablePointer<Int>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        let dims = try required(dims, "dims"), ndim = try required(ndim, "ndim")
        let shape = box.value.sampleShape
        guard capacity(dimsLen) >= shape.count else {
            throw .invalid("dims has room for \(dimsLen) dimensions but the data set's samples have \(shape.count)")
        }
        for (i, d) in shape.enumerated() { dims[i] = d }
        ndim.pointee = shape.count
    }
}

// The three accessors below hand out the address of the data set's own arrays (or of the
// caller's memory it borrows). It stays valid until dl_dataset_free: the box holds the
// arrays and nothing ever mutates them, so Swift's copy-on-write never moves their storage,
// and it is freed only with the box.

@_cdecl("dl_dataset_features")
public func dl_dataset_features(_ dataset: OpaquePointer?, _ data: UnsafeMutablePointer<UnsafePointer<Float>?>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        let out = try required(data, "data")
        out.pointee = box.value.withFeatures { $0.baseAddress }
    }
}

@_cdecl("dl_dataset_labels")
public func dl_dataset_labels(_ dataset: OpaquePointer?, _ labels: UnsafeMutablePointer<UnsafePointer<Int32>?>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        let out = try required(labels, "labels")
        guard box.value.isLabelled else {
            throw .invalid("the data set is unlabelled (\(box.value.count) samples, no labels); dl_dataset_info() tells whether a set has labels")
        }
        out.pointee = box.value.labels.withUnsafeBufferPointer { $0.baseAddress }
    }
}

@_cdecl("dl_dataset_targets")
public func dl_dataset_targets(_ dataset: OpaquePointer?, _ values: UnsafeMutablePointer<UnsafePointer<Float>?>?,
                               _ targetSize: UnsafeMutablePointer<Int>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        let data = box.value
        values?.pointee = data.targetSize > 0 ? data.targetValues.withUnsafeBufferPointer { $0.baseAddress } : nil
        targetSize?.pointee = data.targetSize
    }
}

@_cdecl("dl_dataset_standardizer")
public func dl_dataset_standardizer(_ dataset: OpaquePointer?, _ scale: Double,
                                    _ mean: UnsafeMutablePointer<Double>?, _ std: UnsafeMutablePointer<Double>?) -> Int32 {
    withDataset(dataset) { (box) throws(DLError) in
        let fitted = try Standardizer.fit(box.value, scale: scale)
        mean?.pointee = fitted.mean
        std?.pointee = fitted.std
    }
}

// MARK: - Training and evaluation

/// Runs `body` with the model's box (held for this thread alone, or shared when the call
/// only reads it) and the data set (shared).
private func withModelAndDataset(_ model: OpaquePointer?, _ dataset: OpaquePointer?, readOnly: Bool = false,
                       _ body: (ModelBox, Dataset) throws(DLError) -> Void) -> Int32 {
    with(model, "model", shared: readOnly) { (modelBox: ModelBox) throws(DLError) in
        try holding(dataset, "dataset", shared: true) { (dataBox: DatasetBox) throws(DLError) in
            try body(modelBox, dataBox.value)
        }
    }
}

@_cdecl("dl_model_set_progress")
public func dl_model_set_progress(_ model: OpaquePointer?,
                                  _ function: (@convention(c) (UnsafeMutableRawPointer?, Int, Int, Int, Double) -> Int32)?,
                                  _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        box.progress = function.map { CProgress(function: $0, userData: userData) }
    }
}

@_cdecl("dl_train_epoch")
public func dl_train_epoch(_ model: OpaquePointer?, _ dataset: OpaquePointer?, _ batchSize: Int, _ shuffle: Int32,
                           _ meanLoss: UnsafeMutablePointer<Double>?) -> Int32 {
    withModelAndDataset(model, dataset) { (box, data) throws(DLError) in
        let result = try box.value.trainEpoch(on: data, batchSize: try size(batchSize, "batch_size"), shuffle: shuffle != 0,
                                              progress: box.progress?.handler("dl_train_epoch", "batches"))
        meanLoss?.pointee = result.meanLoss
    }
}

@_cdecl("dl_evaluate_dataset")
public func dl_evaluate_dataset(_ model: OpaquePointer?, _ dataset: OpaquePointer?,
                                _ loss: UnsafeMutablePointer<Double>?, _ accuracy: UnsafeMutablePointer<Double>?) -> Int32 {
    withModelAndDataset(model, dataset, readOnly: true) { (box, data) throws(DLError) in
        let result = try box.value.evaluate(on: data, progress: box.progress?.handler("dl_evaluate_dataset", "chunks"))
        loss?.pointee = result.loss
        accuracy?.pointee = result.accuracy ?? .nan
    }
}
