import DeepLearning
import Glibc

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

/// Loss and, for a classifier, accuracy over a data set with targets, in words:
/// "loss 0.1234, accuracy 95.31%".
func describe(_ r: (loss: Double, accuracy: Double?)) -> String {
    "loss \(fixed(r.loss))" + (r.accuracy.map { ", accuracy \(fixed(100 * $0, 2))%" } ?? "")
}
