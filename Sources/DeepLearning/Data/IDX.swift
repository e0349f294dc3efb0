import Glibc

/// IDX files, the format MNIST is distributed in (http://yann.lecun.com/exdb/mnist/):
/// a big-endian magic number `0x0000TTRR` (TT the element type, RR the number of
/// dimensions), RR big-endian 32-bit dimensions, then the elements in row-major order.
/// Only unsigned bytes (type 0x08) are read: MNIST images are `(N, 28, 28)` with magic
/// 0x00000803, labels `(N,)` with magic 0x00000801. Files may be gzipped.
extension Dataset {
    /// Which half of MNIST to load.
    public enum Split: Sendable {
        /// 60,000 training samples: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
        case train
        /// 10,000 test samples: `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
        case test
    }

    /// Loads an image file `(N, H, W)` and a label file `(N,)`, both IDX of unsigned bytes,
    /// raw or gzipped; `labels` nil loads the images alone, as an unlabelled set. Features
    /// are the pixels as floats 0...255, `sampleShape` `[1, H, W]`.
    /// Throws `.io` for a file that cannot be read, `.format` for a wrong magic number,
    /// type or rank, a truncated or overlong file, or image and label counts that differ.
    public static func loadIDX(images: String, labels: String?) throws(DLError) -> Dataset {
        let (imageShape, pixels) = try readIDX(images, rank: 3, role: "images")
        var labelValues: [Int32]? = nil
        if let labels {
            let (labelShape, labelBytes) = try readIDX(labels, rank: 1, role: "labels")
            guard imageShape[0] == labelShape[0] else {
                throw DLError(.format, "\(images) holds \(imageShape[0]) images but \(labels) holds \(labelShape[0]) labels")
            }
            labelValues = labelBytes.map { Int32($0) }
        }
        guard let probe = malloc(pixels.count * MemoryLayout<Float>.stride + 1) else {
            throw DLError(.noMemory, "\(images): out of memory for \(pixels.count) pixels")
        }
        free(probe)
        let features = pixels.withUnsafeBufferPointer { src in
            [Float](unsafeUninitializedCapacity: src.count) { dst, initialized in
                for i in 0..<src.count { dst[i] = Float(src[i]) }
                initialized = src.count
            }
        }
        return try Dataset(features: features, labels: labelValues, sampleShape: [1] + imageShape.dropFirst())
    }

    /// Loads one split of MNIST from `directory`, which holds the IDX files under their usual
    /// names (`train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, ...), gzipped or not.
    public static func loadMNIST(directory: String, split: Split) throws(DLError) -> Dataset {
        let prefix = split == .train ? "train" : "t10k"
        return try loadIDX(images: findFile(directory, "\(prefix)-images-idx3-ubyte"),
                           labels: findFile(directory, "\(prefix)-labels-idx1-ubyte"))
    }

    /// `directory/name.gz`, or `directory/name` when only that exists.
    private static func findFile(_ directory: String, _ name: String) throws(DLError) -> String {
        let base = directory.hasSuffix("/") ? directory + name : directory + "/" + name
        for path in [base + ".gz", base] where access(path, F_OK) == 0 { return path }
        throw DLError(.io, "\(directory): neither \(name).gz nor \(name) exists "
                      + "(scripts/fetch_mnist.py \(directory) downloads MNIST there)")
    }

    /// Reads an IDX file of unsigned bytes with `rank` dimensions; returns its shape and elements.
    private static func readIDX(_ path: String, rank: Int, role: String) throws(DLError) -> (shape: [Int], bytes: [UInt8]) {
        let file = try DataFile(path)
        let magic = try file.readBytes(upTo: 4)
        guard magic.count == 4 else {
            throw DLError(.format, "\(path): truncated: \(magic.count) bytes, an IDX file starts with a 4-byte magic number")
        }
        let magicText = hex(magic)
        guard magic[0] == 0, magic[1] == 0 else {
            throw DLError(.format, "\(path): not an IDX file (magic number \(magicText) does not start with two zero bytes)")
        }
        guard magic[2] == 0x08 else {
            let known: [UInt8: String] = [0x09: "signed bytes", 0x0B: "16-bit integers", 0x0C: "32-bit integers",
                                          0x0D: "32-bit floats", 0x0E: "64-bit floats"]
            let name = known[magic[2]].map { "IDX type \($0)" } ?? "an unknown IDX type"
            throw DLError(.format, "\(path): magic number \(magicText) declares \(name); only unsigned bytes (type 0x08) are supported")
        }
        guard Int(magic[3]) == rank else {
            throw DLError(.format, "\(path): magic number \(magicText) declares \(magic[3]) dimensions; "
                          + "\(role) need \(rank) (magic 0x0000080\(rank))")
        }
        let header = try file.readBytes(upTo: 4 * rank)
        guard header.count == 4 * rank else {
            throw DLError(.format, "\(path): truncated in the header: \(rank) dimensions need \(4 * rank) bytes after the magic number, the file has \(header.count)")
        }
        let shape = (0..<rank).map { d in header[4 * d ..< 4 * d + 4].reduce(0) { $0 << 8 | Int($1) } }
        if let d = shape.firstIndex(of: 0) {
            throw DLError(.format, "\(path): dimension \(d) of \(shape) is zero; the file holds no \(role)")
        }
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Limits.maxTensorElements else {
                throw DLError(.format, "\(path): dimensions \(shape) exceed the \(Limits.maxTensorElements) elements a data set may hold")
            }
            count = product
        }
        // What the header claims must fit in what the file can hold (for gzip, its size
        // times deflate's largest expansion) before anything is inflated or allocated; the
        // read below then stops at the claim (plus one byte to see the end).
        guard count <= file.maxDataSize - 4 * (rank + 1) || file.compressedSize != nil && count <= file.maxDataSize else {
            let what = file.compressedSize.map { "a gzip file of \($0) bytes can hold at most \(file.maxDataSize) bytes" }
                ?? "the file has \(file.maxDataSize - 4 * (rank + 1))"
            throw DLError(.format, "\(path): truncated: dimensions \(shape) need \(count) bytes of data, \(what)")
        }
        // The set takes 5 bytes per element at its peak (the bytes and their floats): a
        // claim that needs more than the machine's memory is refused before inflating.
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0, pageSize > 0 {
            let (memory, overflow) = pages.multipliedReportingOverflow(by: pageSize)
            if !overflow, count > memory / 5 {
                throw DLError(.noMemory, "\(path): dimensions \(shape) need \(count) elements, \(5 * count) bytes of memory to load; the machine has \(memory)")
            }
        }
        let bytes = try file.readBytes(upTo: count)
        guard bytes.count == count else {
            throw DLError(.format, "\(path): truncated: dimensions \(shape) need \(count) bytes of data, the file has \(bytes.count)")
        }
        guard try file.atEnd() else {
            throw DLError(.format, "\(path): has bytes beyond the \(count) that dimensions \(shape) call for")
        }
        return (shape, bytes)
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
