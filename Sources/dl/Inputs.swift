import DeepLearning
import Glibc

/// One split of MNIST-layout IDX files in `directory`, checked against `model`.
func loadMNIST(_ directory: String, _ split: Dataset.Split, for model: any AnyModel) throws(DLError) -> Dataset {
    let data = try Dataset.loadMNIST(directory: directory, split: split)
    try check(data, fits: model, "\(directory) (\(split == .train ? "training" : "test") set)")
    return data
}

/// Refuses data the model cannot take: a classifier is needed, each sample must hold as
/// many values as the model's input, and every label (of a labelled set) must be one of
/// its classes. `source` names the data in messages.
func check(_ data: Dataset, fits model: any AnyModel, _ source: String) throws(DLError) {
    guard model.isClassifier else {
        throw DLError(.unsupported, "the model's loss is \(model.spec.loss.type); class labels need a cross_entropy classifier")
    }
    guard data.featureSize == model.inputSize else {
        throw .invalid("\(source): each sample holds \(data.featureSize) values (shape \(data.sampleShape)), "
                       + "but the model's input takes \(model.inputSize) (shape \(model.inputShape))")
    }
    if let i = data.labels.firstIndex(where: { Int($0) >= model.outputSize }) {
        throw .invalid("\(source): label \(data.labels[i]) of sample \(i) is out of range: "
                       + "the model has \(model.outputSize) classes (0...\(model.outputSize - 1))")
    }
}

/// The spec's input transform in words.
func describe(_ p: Preprocessing) -> String {
    if p.isIdentity { return "none (inputs are used as given)" }
    let scale = abs(p.scale * 255 - 1) < 1e-12 ? "1/255" : "\(p.scale)"
    return "x' = (x * \(scale) - \(fixed(p.mean, 6))) / \(fixed(p.std, 6))"
}

/// `path` with `suffix` replaced by `replacement`, or nil when it does not end in `suffix`.
func replacingSuffix(_ path: String, _ suffix: String, _ replacement: String) -> String? {
    path.hasSuffix(suffix) ? String(path.dropLast(suffix.count)) + replacement : nil
}

/// Whether `path` names a folder.
func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}
