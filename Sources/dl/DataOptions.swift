import ArgumentParser
import DeepLearning
import Glibc

/// The formats a data path can hold; `--format` names one, else the path tells.
enum DataFormat: String, ExpressibleByArgument, CaseIterable {
    /// A folder with MNIST's four IDX files under their usual names.
    case mnist
    /// An IDX images file, with its labels from `--labels` or beside it.
    case idx
    /// CSV: the targets first (one label column, or `--targets N` value columns), then the features.
    case csv
    /// HDF5 with datasets `x` and, optionally, `y`.
    case hdf5

    /// The format a path's name or kind implies, or nil.
    static func guess(_ path: String) -> DataFormat? {
        let name = path.split(separator: "/").last.map { $0.lowercased() } ?? ""
        if isDirectory(path) { return .mnist }
        if name.hasSuffix(".csv") || name.hasSuffix(".csv.gz") { return .csv }
        if name.hasSuffix(".h5") || name.hasSuffix(".hdf5") { return .hdf5 }
        if name.contains("idx") || name.hasSuffix("-ubyte") || name.hasSuffix("-ubyte.gz") { return .idx }
        return nil
    }
}

/// Which part of an MNIST folder a data path stands for.
enum Split: String, ExpressibleByArgument, CaseIterable {
    case train, test

    var dataset: Dataset.Split { self == .train ? .train : .test }
}

/// How data files are read: the options `dl train`, `dl eval` and `dl predict` share.
struct DataOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The data format; by default the path tells: a folder is MNIST, *.csv[.gz] CSV, "
                               + "*.h5 and *.hdf5 HDF5, names with idx or ending in -ubyte[.gz] IDX images.",
                               valueName: "mnist|idx|csv|hdf5"))
    var format: DataFormat?

    @Option(help: ArgumentHelp("IDX only: the labels file of the images (default: the file beside them whose "
                               + "name has labels-idx1 for images-idx3, if it exists).", valueName: "path"))
    var labels: String?

    @Option(help: ArgumentHelp("CSV only: the number of target-value columns before the features (default: "
                               + "one label column for a classifier, one column per output for other models).",
                               valueName: "n"))
    var targets: Int?

    /// The data set at `path` for `model`: read in its format (a folder's `split`), its
    /// samples of the model's input size and its targets, if any, of the model's kind.
    /// `labels` is the IDX labels file (`--labels` for the main data; a second data path
    /// has its own).
    func load(_ path: String, split: Split, labels labelsPath: String?, for model: any AnyModel) throws(DLError) -> Dataset {
        guard let format = format ?? DataFormat.guess(path) else {
            throw .invalid("\(path): cannot tell the data format from the name; give --format "
                           + DataFormat.allCases.map(\.rawValue).joined(separator: "|"))
        }
        if labelsPath != nil, format != .idx {
            throw .invalid("--labels is for IDX images; \(path) is \(format.rawValue) data, which carries its own targets")
        }
        if targets != nil, format != .csv {
            throw .invalid("--targets is for CSV files; \(path) is \(format.rawValue) data")
        }
        if let targets, targets < 1 { throw .invalid("--targets must be at least 1, got \(targets)") }
        let data: Dataset
        switch format {
        case .mnist:
            data = try Dataset.loadMNIST(directory: path, split: split.dataset)
        case .idx:
            data = try Dataset.loadIDX(images: path, labels: labelsPath ?? Self.labelsBeside(path))
        case .csv:
            // A classifier reads a label column unless told otherwise; other models one value per output.
            let count = targets ?? (model.isClassifier ? nil : model.outputSize)
            data = try Dataset.loadCSV(path, featureCount: model.inputSize, targetCount: count)
        case .hdf5:
            data = try Dataset.loadHDF5(path)
        }
        let source = format == .mnist ? "\(path) (\(split.rawValue) split)" : path
        do throws(DLError) {
            try model.checkInput(data)
            if data.targets != .none { try model.checkTargets(data, for: "this model") }
            if let i = data.labels.firstIndex(where: { Int($0) >= model.outputSize }) {
                throw .invalid("label \(data.labels[i]) of sample \(i) is out of range: "
                               + "the model has \(model.outputSize) classes (0...\(model.outputSize - 1))")
            }
        } catch {
            throw DLError(error.kind, "\(source): \(error.message)")
        }
        return data
    }

    /// The labels file beside IDX images, named with labels-idx1 for images-idx3, if it exists.
    static func labelsBeside(_ images: String) -> String? {
        let slash = images.lastIndex(of: "/").map { images.index(after: $0) } ?? images.startIndex
        let folder = String(images[..<slash]), name = String(images[slash...])
        guard name.contains("images-idx3") else { return nil }
        let labelName = name.replacingOccurrences("images-idx3", "labels-idx1")
        let stem = replacingSuffix(labelName, ".gz", "") ?? labelName
        return [folder + stem + ".gz", folder + stem].first { access($0, F_OK) == 0 }
    }
}

extension String {
    /// Every `target` replaced by `replacement` (Foundation's method, which the tool does not use).
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = "", rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
