import CHDF5
import CZlib
import Glibc
import Testing
@testable import DeepLearning

// Data loading: every loader against the values written, every kind of damage rejected
// with a message naming the file and the fault, and the standardizer against a direct
// computation. Files are small and written to a fresh temporary directory per test.

// MARK: - Helpers

/// Runs `body` with a fresh temporary directory, removed afterwards (the tests write only files).
private func withScratchDirectory(_ body: (String) throws -> Void) rethrows {
    var template = Array("/tmp/dl-data-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    defer {
        if let d = opendir(dir) {
            while let entry = readdir(d) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { unlink(dir + "/" + name) }
            }
            closedir(d)
        }
        rmdir(dir)
    }
    try body(dir)
}

private func put(_ path: String, _ bytes: [UInt8]) {
    let f = fopen(path, "wb")!
    _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

private func put(_ path: String, _ text: String) { put(path, Array(text.utf8)) }

/// Writes `bytes` gzip-compressed with zlib's own gzwrite.
private func putGzip(_ path: String, _ bytes: [UInt8]) {
    let f = gzopen(path, "wb")!
    _ = bytes.withUnsafeBufferPointer { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
    gzclose(f)
}

private func gzipped(_ bytes: [UInt8], in directory: String) -> [UInt8] {
    let path = directory + "/scratch.gz"
    putGzip(path, bytes)
    let f = fopen(path, "rb")!
    defer { fclose(f); unlink(path) }
    var out: [UInt8] = []
    var byte = fgetc(f)
    while byte != EOF { out.append(UInt8(byte)); byte = fgetc(f) }
    return out
}

/// An IDX file: magic 0x0000_08_rank (or `magic` when given), big-endian dimensions, data.
private func idx(_ dims: [Int], _ data: [UInt8], magic: [UInt8]? = nil) -> [UInt8] {
    var bytes = magic ?? [0, 0, 0x08, UInt8(dims.count)]
    for d in dims { bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: d >> $0) } }
    return bytes + data
}

/// The DLError `body` throws; records an issue if it succeeds or throws something else.
private func failure<R>(_ body: () throws -> R, sourceLocation: SourceLocation = #_sourceLocation) -> DLError {
    do {
        _ = try body()
        Issue.record("expected an error, the call succeeded", sourceLocation: sourceLocation)
    } catch let error as DLError {
        return error
    } catch {
        Issue.record("expected a DLError, got \(error)", sourceLocation: sourceLocation)
    }
    return DLError(.internal, "")
}

/// Expects `body` to throw an error of `kind` whose message contains every one of `parts`.
private func expectFailure<R>(_ kind: DLErrorKind, _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation,
                              _ body: () throws -> R) {
    let error = failure(body, sourceLocation: sourceLocation)
    #expect(error.kind == kind, "\(error.message)", sourceLocation: sourceLocation)
    for part in parts {
        #expect(error.message.contains(part), "message \"\(error.message)\" lacks \"\(part)\"", sourceLocation: sourceLocation)
    }
}

// Sample data: 3 images of 2 x 4 pixels and their labels.
private let pixels: [UInt8] = (0..<24).map { UInt8(($0 * 37 + 11) % 256) }
private let imageLabels: [UInt8] = [7, 0, 255]

/// HDF5 file types for the test files, resolved inside `writeHDF5` once the library is open.
private enum H5Type {
    case f32, f64, i64, i16, u8

    /// A new type id; the caller closes it.
    func make() -> hid_t {
        switch self {
        case .f32: return H5Tcopy(dlh5_ieee_f32le())
        case .f64: return H5Tcopy(dlh5_ieee_f64le())
        case .i64, .i16, .u8:
            let t = H5Tcopy(dlh5_std_i64le())
            if self != .i64 { H5Tset_size(t, self == .i16 ? 2 : 1) }
            if self == .u8 { H5Tset_sign(t, H5T_SGN_NONE) }
            return t
        }
    }
}

/// Writes datasets (name, shape, file type, values) into a new HDF5 file.
private func writeHDF5(_ path: String, _ datasets: [(name: String, shape: [Int], type: H5Type, values: [Double])]) throws {
    try HDF5File.locked { () throws(DLError) in
        let file = try HDF5File.create(path)
        for d in datasets {
            let space = H5Screate_simple(Int32(d.shape.count), d.shape.map { hsize_t($0) }, nil)
            let type = d.type.make()
            let set = H5Dcreate2(file.id, d.name, type, space, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
            // HDF5 converts the doubles to the file type on write.
            _ = H5Dwrite(set, dlh5_native_double(), dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), d.values)
            H5Dclose(set)
            H5Tclose(type)
            H5Sclose(space)
        }
        file.close()
    }
}

@Suite struct DataTests {
    // MARK: - IDX

    @Test func idxLoadsRawAndGzippedFiles() throws {
        try withScratchDirectory { dir in
            put(dir + "/images", idx([3, 2, 4], pixels))
            put(dir + "/labels", idx([3], imageLabels))
            putGzip(dir + "/images.gz", idx([3, 2, 4], pixels))
            putGzip(dir + "/labels.gz", idx([3], imageLabels))
            for (images, labels) in [("images", "labels"), ("images.gz", "labels.gz"), ("images", "labels.gz")] {
                let data = try Dataset.loadIDX(images: dir + "/" + images, labels: dir + "/" + labels)
                #expect(data.count == 3)
                #expect(data.featureSize == 8)
                #expect(data.sampleShape == [1, 2, 4])
                #expect(data.features == pixels.map { Float($0) })
                #expect(data.labels == [7, 0, 255])
            }
        }
    }

    @Test func idxLoadsImagesWithoutLabels() throws {
        try withScratchDirectory { dir in
            put(dir + "/images", idx([3, 2, 4], pixels))
            putGzip(dir + "/images.gz", idx([3, 2, 4], pixels))
            for images in ["images", "images.gz"] {
                let data = try Dataset.loadIDX(images: dir + "/" + images, labels: nil)
                #expect(!data.isLabelled && data.labels.isEmpty)
                #expect(data.count == 3 && data.featureSize == 8 && data.sampleShape == [1, 2, 4])
                #expect(data.features == pixels.map { Float($0) })
                expectFailure(.invalidArgument, "unlabelled (3 samples", "training needs class labels") { try data.labels(for: "training") }
            }
            expectFailure(.format, dir + "/bad", "truncated") {
                put(dir + "/bad", Array(idx([3, 2, 4], pixels).dropLast()))
                return try Dataset.loadIDX(images: dir + "/bad", labels: nil)
            }
        }
    }

    @Test func mnistFindsGzippedOrRawFiles() throws {
        try withScratchDirectory { dir in
            putGzip(dir + "/train-images-idx3-ubyte.gz", idx([3, 2, 4], pixels))
            putGzip(dir + "/train-labels-idx1-ubyte.gz", idx([3], imageLabels))
            put(dir + "/t10k-images-idx3-ubyte", idx([1, 2, 4], Array(pixels[8..<16])))
            put(dir + "/t10k-labels-idx1-ubyte", idx([1], [4]))
            let train = try Dataset.loadMNIST(directory: dir, split: .train)
            let test = try Dataset.loadMNIST(directory: dir + "/", split: .test)
            #expect(train.count == 3 && train.labels == [7, 0, 255])
            #expect(test.count == 1 && test.labels == [4] && test.features == pixels[8..<16].map { Float($0) })

            expectFailure(.io, dir + "/nowhere", "train-images-idx3-ubyte.gz", "fetch_mnist.py") {
                try Dataset.loadMNIST(directory: dir + "/nowhere", split: .train)
            }
        }
    }

    @Test func idxRejectsDamagedFiles() throws {
        try withScratchDirectory { dir in
            let goodImages = idx([3, 2, 4], pixels)
            let labels = dir + "/labels"
            put(labels, idx([3], imageLabels))
            func images(_ bytes: [UInt8], gzip: Bool = false) -> String {
                let path = dir + (gzip ? "/bad.gz" : "/bad")
                if gzip { putGzip(path, bytes) } else { put(path, bytes) }
                return path
            }

            // Truncated anywhere, raw or gzipped: in the magic, in the dimensions, in the data.
            for gzip in [false, true] {
                for cut in [0, 3] {
                    expectFailure(.format, "truncated", "4-byte magic") { try Dataset.loadIDX(images: images(Array(goodImages[..<cut]), gzip: gzip), labels: labels) }
                }
                for cut in [4, 9, 15] {
                    expectFailure(.format, "truncated in the header") { try Dataset.loadIDX(images: images(Array(goodImages[..<cut]), gzip: gzip), labels: labels) }
                }
                for cut in [16, 30, goodImages.count - 1] {
                    expectFailure(.format, "/bad", "truncated", "need 24 bytes of data, the file has \(cut - 16)") {
                        try Dataset.loadIDX(images: images(Array(goodImages[..<cut]), gzip: gzip), labels: labels)
                    }
                }
                expectFailure(.format, "bytes beyond the 24") { try Dataset.loadIDX(images: images(goodImages + [0], gzip: gzip), labels: labels) }
            }
            // Wrong magic: labels given as images, not IDX at all, an unsupported type, a zero count.
            expectFailure(.format, dir + "/labels", "declares 1 dimensions", "images need 3") { try Dataset.loadIDX(images: labels, labels: labels) }
            expectFailure(.format, "not an IDX file", "0x89504e47") { try Dataset.loadIDX(images: images([0x89, 0x50, 0x4e, 0x47] + goodImages), labels: labels) }
            expectFailure(.format, "32-bit floats", "only unsigned bytes") {
                try Dataset.loadIDX(images: images(idx([3, 2, 4], pixels, magic: [0, 0, 0x0D, 3])), labels: labels)
            }
            expectFailure(.format, "dimension 0 of [0, 2, 4] is zero") { try Dataset.loadIDX(images: images(idx([0, 2, 4], [])), labels: labels) }
            expectFailure(.format, "exceed") { try Dataset.loadIDX(images: images(idx([65536, 65536, 2], [])), labels: labels) }
            // Image and label counts differ.
            put(dir + "/two-labels", idx([2], [1, 2]))
            expectFailure(.format, "holds 3 images but", "/two-labels holds 2 labels") { try Dataset.loadIDX(images: images(goodImages), labels: dir + "/two-labels") }
            // Missing file, a directory.
            expectFailure(.io, dir + "/missing", "No such file") { try Dataset.loadIDX(images: dir + "/missing", labels: labels) }
            expectFailure(.io, "is a directory") { try Dataset.loadIDX(images: dir, labels: labels) }
        }
    }

    @Test func gzipDamageIsAnError() throws {
        try withScratchDirectory { dir in
            let labels = dir + "/labels"
            put(labels, idx([3], imageLabels))
            let compressed = gzipped(idx([3, 2, 4], pixels), in: dir)
            let path = dir + "/images.gz"

            put(path, idx([3, 2, 4], pixels))  // raw data under a .gz name
            expectFailure(.format, path, "not a gzip file") { try Dataset.loadIDX(images: path, labels: labels) }
            for cut in [2, 10, 20, compressed.count - 4, compressed.count - 1] {  // header, deflate data, CRC, length
                put(path, Array(compressed[..<cut]))
                expectFailure(.format, path, "gzip data") { try Dataset.loadIDX(images: path, labels: labels) }
            }
            var flipped = compressed
            flipped[compressed.count - 6] ^= 0xFF  // the CRC-32 no longer matches
            put(path, flipped)
            expectFailure(.format, path, "damaged gzip data (zlib: incorrect data check)") { try Dataset.loadIDX(images: path, labels: labels) }
            put(path, Array(compressed[..<10]) + Array(repeating: 0xFF, count: 40))  // deflate block type 3 does not exist
            expectFailure(.format, path, "damaged gzip data", "invalid block type") { try Dataset.loadIDX(images: path, labels: labels) }
        }
    }

    /// No byte string makes a loader trap: random corruptions of valid files either load or throw.
    @Test func loadersSurviveRandomCorruption() throws {
        try withScratchDirectory { dir in
            let labels = dir + "/labels"
            put(labels, idx([3], imageLabels))
            let originals: [(name: String, bytes: [UInt8])] = [
                ("/images", idx([3, 2, 4], pixels)),
                ("/images.gz", gzipped(idx([3, 2, 4], pixels), in: dir)),
                ("/data.csv", Array("label,a,b\n1,0.5,2\n0,-3,4e2\n".utf8)),
            ]
            var rng = RandomGenerator(seed: 11)
            for (name, original) in originals {
                for _ in 0..<150 {
                    var bytes = original
                    for _ in 0..<(1 + rng.below(3)) {
                        switch rng.below(3) {
                        case 0: bytes[rng.below(bytes.count)] = UInt8(rng.below(256))
                        case 1: bytes.removeSubrange(rng.below(bytes.count)...)
                        default: bytes.insert(UInt8(rng.below(256)), at: rng.below(bytes.count + 1))
                        }
                        if bytes.isEmpty { break }
                    }
                    put(dir + name, bytes)
                    do {
                        let data = name.hasSuffix(".csv") ? try Dataset.loadCSV(dir + name)
                                                          : try Dataset.loadIDX(images: dir + name, labels: labels)
                        #expect(data.features.count == data.count * data.featureSize)
                    } catch let error as DLError {
                        #expect(error.message.contains(dir + name), "\(error.message)")
                    }
                }
            }
        }
    }

    // MARK: - CSV

    @Test func csvLoadsWithAndWithoutHeader() throws {
        try withScratchDirectory { dir in
            let rows = "3,0,255,0.5\n0,-1.25e-3, 7 ,1e2\n"
            put(dir + "/plain.csv", rows)
            put(dir + "/header.csv", "label,p1,p2,p3\r\n" + rows.split(separator: "\n").joined(separator: "\r\n") + "\r\n\r\n")
            putGzip(dir + "/blank-lines.csv.gz", Array(("\n" + rows.replacingOccurrences("\n", "\n\n")).utf8))
            for name in ["plain.csv", "header.csv", "blank-lines.csv.gz"] {
                let data = try Dataset.loadCSV(dir + "/" + name)
                #expect(data.count == 2, "\(name)")
                #expect(data.sampleShape == [3] && data.featureSize == 3)
                #expect(data.labels == [3, 0])
                #expect(data.features == [0, 255, 0.5, -1.25e-3, 7, 100], "\(name)")
            }
            #expect(try Dataset.loadCSV(dir + "/header.csv", featureCount: 3).count == 2)
            put(dir + "/last-line.csv", "1,2\n3,4")  // no newline at the end
            #expect(try Dataset.loadCSV(dir + "/last-line.csv").features == [2, 4])
            put(dir + "/exact.csv", "2,12345678,0.1,-0\n")  // beyond the integer shortcut: strtof's rounding
            #expect(try Dataset.loadCSV(dir + "/exact.csv").features == [12345678, 0.1, -0.0])
        }
    }

    @Test func csvWithoutLabelColumnLoadsUnlabelled() throws {
        try withScratchDirectory { dir in
            put(dir + "/plain.csv", "0,255,0.5\n-1.25e-3, 7 ,1e2\n")
            put(dir + "/header.csv", "p1,p2,p3\r\n0,255,0.5\r\n-1.25e-3,7,100\r\n")
            for name in ["plain.csv", "header.csv"] {
                let data = try Dataset.loadCSV(dir + "/" + name, featureCount: 3)
                #expect(!data.isLabelled && data.labels.isEmpty, "\(name)")
                #expect(data.count == 2 && data.sampleShape == [3] && data.featureSize == 3)
                #expect(data.features == [0, 255, 0.5, -1.25e-3, 7, 100], "\(name)")
            }
            // Without featureCount, or with one more column than featureCount, the first column is the label.
            expectFailure(.format, dir + "/plain.csv:2:1: label \"-1.25e-3\" is not a non-negative integer") {
                try Dataset.loadCSV(dir + "/plain.csv")
            }
            put(dir + "/labelled.csv", "3,0,255,0.5\n0,-1,7,1e2\n")
            let withLabels = try Dataset.loadCSV(dir + "/labelled.csv", featureCount: 3)
            #expect(withLabels.isLabelled && withLabels.labels == [3, 0] && withLabels.features == [0, 255, 0.5, -1, 7, 100])
            // One feature per row.
            put(dir + "/single.csv", "4\n5.5\n")
            let single = try Dataset.loadCSV(dir + "/single.csv", featureCount: 1)
            #expect(!single.isLabelled && single.count == 2 && single.features == [4, 5.5])
        }
    }

    @Test func csvLoadsTargetColumns() throws {
        try withScratchDirectory { dir in
            put(dir + "/two.csv", "t1,t2,a,b,c\n0.5,-2,1,2,3\n1e-3, 4 ,4,5,6\n")
            for featureCount in [nil, 3] {
                let data = try Dataset.loadCSV(dir + "/two.csv", featureCount: featureCount, targetCount: 2)
                #expect(data.targets == .values([0.5, -2, 1e-3, 4], size: 2) && data.targetSize == 2 && !data.isLabelled)
                #expect(data.features == [1, 2, 3, 4, 5, 6] && data.sampleShape == [3])
            }
            // Rows of exactly featureCount columns have no targets.
            let bare = try Dataset.loadCSV(dir + "/two.csv", featureCount: 5, targetCount: 2)
            #expect(bare.targets == .none && bare.featureSize == 5)
            expectFailure(.format, dir + "/two.csv:1:1: the header has 5 columns, expected 6 (2 targets and 4 features)") {
                try Dataset.loadCSV(dir + "/two.csv", featureCount: 4, targetCount: 2)
            }
            put(dir + "/short.csv", "1,2\n")
            expectFailure(.format, "a row needs 2 targets and at least one feature, this one has 2 columns") {
                try Dataset.loadCSV(dir + "/short.csv", targetCount: 2)
            }
            put(dir + "/nan.csv", "1,nan,3\n")
            expectFailure(.format, "nan.csv:1:3: \"nan\" is not a finite number") { try Dataset.loadCSV(dir + "/nan.csv", targetCount: 2) }
            expectFailure(.invalidArgument, "targetCount must be at least 1") { try Dataset.loadCSV(dir + "/two.csv", targetCount: 0) }
        }
    }

    @Test func hdf5FloatTargetsLoadAsValues() throws {
        try withScratchDirectory { dir in
            let path = dir + "/regression.h5"
            try writeHDF5(path, [("x", [3, 2], .f32, [1, 2, 3, 4, 5, 6]), ("y", [3, 2], .f64, [0.5, 1, 1.5, 2, 2.5, -3])])
            let wide = try Dataset.loadHDF5(path)
            #expect(wide.targets == .values([0.5, 1, 1.5, 2, 2.5, -3], size: 2) && wide.count == 3)
            try writeHDF5(path, [("x", [3, 2], .f32, [1, 2, 3, 4, 5, 6]), ("y", [3], .f32, [0.25, 1, 2])])
            #expect(try Dataset.loadHDF5(path).targets == .values([0.25, 1, 2], size: 1))
        }
    }

    @Test func csvErrorsPointAtLineAndColumn() throws {
        try withScratchDirectory { dir in
            let path = dir + "/bad.csv"
            func check(_ text: String, _ parts: String..., featureCount: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
                put(path, text)
                let error = failure({ try Dataset.loadCSV(path, featureCount: featureCount) }, sourceLocation: sourceLocation)
                #expect(error.kind == .format, sourceLocation: sourceLocation)
                for part in parts {
                    #expect(error.message.contains(part), "message \"\(error.message)\" lacks \"\(part)\"", sourceLocation: sourceLocation)
                }
            }
            check("label,a,b\n1,2,3\n4,5,1x\n", path + ":3:5: \"1x\" is not a number")
            check("1,2,3\n4,abc,6\n", path + ":2:3: \"abc\" is not a number")
            check("1,2,3\n4,5,\n", path + ":2:5: empty field")
            check("1,2,3\n4,,6\n", path + ":2:3: empty field")
            check("1,2,3\n4,5\n7,8,9\n", path + ":2:4: 2 columns, expected 3")
            check("1,2,3\n4,5,6,7\n", path + ":2:6: 4 columns, expected 3 (a label and 2 features)")
            check("1,2,3\r\n4,5,6 7\r\n", path + ":2:5: \"6 7\" is not a number")
            check("1,2,3\n4,5,6\r7\n", path + ":2:7: unexpected \"7\" after a number")
            check("1,2,3\n-1,5,6\n", path + ":2:1: label \"-1\" is not a non-negative integer")
            check("1,2,3\n2.5,5,6\n", path + ":2:1: label \"2.5\" is not a non-negative integer")
            check("1,2,3\n9999999999,5,6\n", path + ":2:1: label \"9999999999\"")
            check("1,2,3\n4,nan,6\n", path + ":2:3: \"nan\" is not a finite number")
            check("1,2,3\n4,1e39,6\n", path + ":2:3: \"1e39\" is not a finite number")
            check("1,2\n3,4\u{0}\n", path + ":2:3: \"4\\x00\" is not a number")
            check("1,2\n", path + ":1:4: 2 columns, expected 4 (a label and 3 features), or 3 (the features alone, unlabelled)", featureCount: 3)
            check("1,2,3,4\n1,2\n", path + ":2:4: 2 columns, expected 4 (a label and 3 features)", featureCount: 3)
            let laterRow = failure({ try Dataset.loadCSV(path, featureCount: 3) })
            #expect(!laterRow.message.contains("unlabelled"), "\(laterRow.message)")  // only the first row decides the layout
            check("1,2,3\n1,2,3,4\n", path + ":2:6: 4 columns, expected 3 (3 features, no label column)", featureCount: 3)
            check("a,b,c\n1,2\n", path + ":2:4: 2 columns, expected 3 (3 features, no label column)", featureCount: 3)
            check("label,a,b\n1,2\n", path + ":1:1: the header has 3 columns, expected 2 (a label and 1 feature), or 1", featureCount: 1)
            check("label,a,b\n1,2,3\n4,5\n", path + ":3:4: 2 columns, expected 3")
            check("7\n", path + ":1:1: a row needs a label and at least one feature")
            check("", path + ": empty file")
            check("\n  \n", path + ": empty file")
            check("label,a\n\n", path + ": a header but no data rows")
            check("\u{0}\u{0}\u{8}\u{1},a\n", path + ":1:1: binary data (byte 0x0), not CSV text")
            expectFailure(.invalidArgument, "featureCount must be at least 1") { try Dataset.loadCSV(path, featureCount: 0) }
            expectFailure(.io, dir + "/missing.csv") { try Dataset.loadCSV(dir + "/missing.csv") }
        }
    }

    // MARK: - HDF5

    @Test func hdf5LoadsFloatAndByteFeatures() throws {
        try withScratchDirectory { dir in
            let x: [Double] = (0..<12).map { Double($0) * 0.25 - 1 }
            try writeHDF5(dir + "/float.h5", [("x", [2, 2, 3], .f32, x), ("y", [2], .i64, [9, 0])])
            let floats = try Dataset.loadHDF5(dir + "/float.h5")
            #expect(floats.sampleShape == [2, 3] && floats.count == 2 && floats.featureSize == 6)
            #expect(floats.features == x.map { Float($0) })
            #expect(floats.labels == [9, 0])

            let bytes: [Double] = [0, 1, 128, 255, 3, 4]
            try writeHDF5(dir + "/bytes.h5", [("x", [3, 2], .u8, bytes), ("y", [3], .u8, [1, 2, 3])])
            let data = try Dataset.loadHDF5(dir + "/bytes.h5")
            #expect(data.sampleShape == [2] && data.features == bytes.map { Float($0) } && data.labels == [1, 2, 3])
        }
    }

    @Test func hdf5WithoutLabelsLoadsUnlabelled() throws {
        try withScratchDirectory { dir in
            let x: [Double] = (0..<12).map { Double($0) * 0.5 }
            try writeHDF5(dir + "/x-only.h5", [("x", [4, 3], .f64, x)])
            let data = try Dataset.loadHDF5(dir + "/x-only.h5")
            #expect(!data.isLabelled && data.labels.isEmpty)
            #expect(data.count == 4 && data.sampleShape == [3] && data.features == x.map { Float($0) })
            try writeHDF5(dir + "/y-only.h5", [("y", [3], .i64, [0, 1, 2])])
            expectFailure(.format, "missing dataset x") { try Dataset.loadHDF5(dir + "/y-only.h5") }
        }
    }

    @Test func hdf5RejectsWrongLayouts() throws {
        try withScratchDirectory { dir in
            let path = dir + "/bad.h5"
            let y3: (String, [Int], H5Type, [Double]) = ("y", [3], .i64, [0, 1, 2])
            func check(_ datasets: [(name: String, shape: [Int], type: H5Type, values: [Double])], _ parts: String...,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
                try writeHDF5(path, datasets)
                let error = failure({ try Dataset.loadHDF5(path) }, sourceLocation: sourceLocation)
                #expect(error.kind == .format, sourceLocation: sourceLocation)
                for part in [path] + parts {
                    #expect(error.message.contains(part), "message \"\(error.message)\" lacks \"\(part)\"", sourceLocation: sourceLocation)
                }
            }
            let six = [Double](repeating: 1, count: 6)
            try check([y3], "missing dataset x")
            try check([("x", [6], .f32, six), y3], "dataset x has shape [6]")
            try check([("x", [3, 2], .i16, six), y3], "16-bit signed integers", "expected floats or unsigned bytes")
            try check([("x", [3, 2], .f32, six), ("y", [3, 1, 1], .f32, [0, 1, 2])], "target values need (samples,) or (samples, outputs)")
            try check([("x", [3, 2], .f32, six), ("y", [3], .f32, [0, .nan, 2])], "y holds nan in sample 1")
            try check([("x", [3, 2], .f32, six), ("y", [3, 1], .i64, [0, 1, 2])], "dataset y has shape [3, 1]")
            try check([("x", [2, 3], .f32, six), y3], "x holds 2 samples but y has shape [3]")
            try check([("x", [3, 2], .f32, six), ("y", [3], .i64, [0, -4, 2])], "label -4 of sample 1")
            try check([("x", [3, 2], .f64, [1, 2, .nan, 4, 5, 6]), y3], "nan in sample 1")
            try check([("x", [3, 2], .f64, [1, 2, 3, 1e300, 5, 6]), y3], "inf in sample 1")

            put(dir + "/text.h5", "not hdf5")
            expectFailure(.format, dir + "/text.h5", "not an HDF5 file") { try Dataset.loadHDF5(dir + "/text.h5") }
            expectFailure(.io, dir + "/missing.h5") { try Dataset.loadHDF5(dir + "/missing.h5") }
        }
    }

    // MARK: - Borrowed features

    /// Counts the calls of a borrowed data set's release function.
    final class ReleaseCounter: @unchecked Sendable { var calls = 0 }

    @Test func aBorrowedDataSetReadsInPlaceAndReleasesOnce() throws {
        let memory = UnsafeMutableBufferPointer<Float>.allocate(capacity: 6)
        defer { memory.deallocate() }
        _ = memory.initialize(from: [1, 2, 3, 4, 5, 6])
        let counter = ReleaseCounter()
        do {
            var data = try Dataset(borrowing: UnsafeBufferPointer(memory), targets: .labels([0, 1, 0]), sampleShape: [2],
                                   release: { counter.calls += 1 })
            #expect(data.isBorrowed && data.count == 3 && data.features == [1, 2, 3, 4, 5, 6])
            #expect(data.withFeatures { $0.baseAddress } == UnsafePointer(memory.baseAddress))
            memory[0] = 10                                   // read in place: the change shows
            #expect(data.features[0] == 10)
            let copy = data                                  // shares the memory, as structs share arrays
            // Changing the features copies them first: the caller's memory is never written.
            let s = try Standardizer.fit(data)
            s.apply(to: &data)
            #expect(!data.isBorrowed && memory[0] == 10 && copy.isBorrowed)
            let expected = [10, 2, 3, 4, 5, 6].map { (Double($0) - s.mean) / s.std }
            #expect(maxAbsDiff(data.features.map(Double.init), expected) < 1e-5)
            #expect(counter.calls == 0)
            _ = copy
        }
        #expect(counter.calls == 1, "released once, when the last copy went")
        // A refused set releases too, before the initializer returns.
        expectFailure(.invalidArgument, "needs 3 feature values, got 6") {
            try Dataset(borrowing: UnsafeBufferPointer(memory), targets: .labels([0]), sampleShape: [3],
                        release: { counter.calls += 1 })
        }
        #expect(counter.calls == 2)
    }

    // MARK: - Standardizer

    @Test func standardizerMatchesDirectComputation() throws {
        var rng = RandomGenerator(seed: 5)
        let raw = (0..<3000).map { _ in Float(rng.below(256)) }
        var data = try Dataset(features: raw, labels: [Int32](repeating: 1, count: 1000), sampleShape: [3])
        let s = try Standardizer.fit(data, scale: 1.0 / 255)

        let scaled = raw.map { Double($0) / 255 }
        let mean = scaled.reduce(0, +) / Double(scaled.count)
        let std = (scaled.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scaled.count)).squareRoot()
        #expect(abs(s.mean - mean) < 1e-12 && abs(s.std - std) < 1e-12)
        #expect(s.scale == 1.0 / 255)

        s.apply(to: &data)
        let expected = raw.map { (Double($0) / 255 - mean) / std }
        #expect(maxAbsDiff(data.features.map { Double($0) }, expected) < 1e-5)
        // The training set itself comes out with mean 0 and std 1.
        let refit = try Standardizer.fit(data)
        #expect(abs(refit.mean) < 1e-6 && abs(refit.std - 1) < 1e-5)

        let constant = try Dataset(features: [2, 2, 2, 2], labels: [0, 0], sampleShape: [2])
        expectFailure(.invalidArgument, "all 4 feature values are equal") { try Standardizer.fit(constant) }
        expectFailure(.invalidArgument, "std") { try Standardizer(mean: 0, std: 0) }
        expectFailure(.invalidArgument, "scale: expected a number in [1e-12, 1000000000000], got -1.0") { try Standardizer.fit(data, scale: -1) }
        expectFailure(.invalidArgument, "scale: expected a number in [1e-12, 1000000000000], got nan") { try Standardizer.fit(data, scale: .nan) }
    }

    @Test func datasetValidatesValueTargets() throws {
        let data = try Dataset(features: [1, 2, 3, 4], targets: .values([1, 2, 3, 4, 5, 6], size: 3), sampleShape: [2])
        #expect(data.count == 2 && data.targetSize == 3 && data.targetValues.count == 6 && data.labels.isEmpty)
        expectFailure(.invalidArgument, "2 samples of shape [2] needs 4 feature values, got 6") {
            try Dataset(features: [1, 2, 3, 4, 5, 6], targets: .values([1, 2, 3, 4], size: 2), sampleShape: [2])
        }
        expectFailure(.invalidArgument, "target inf of sample 1 is not finite") {
            try Dataset(features: [1, 2], targets: .values([0, .infinity], size: 1), sampleShape: [1])
        }
        expectFailure(.invalidArgument, "rows of 0") { try Dataset(features: [1], targets: .values([], size: 0), sampleShape: [1]) }
        expectFailure(.invalidArgument, "unlabelled", "training needs class labels or target values") {
            try Dataset(features: [1], labels: nil, sampleShape: [1]).checkTargets(for: "training")
        }
    }

    /// Value targets train as labels do: a cross-entropy model learns the same bits from
    /// one-hot rows as from their labels, shuffled or not (the rows follow their samples),
    /// and a regression epoch in order equals trainStep on consecutive batches.
    @Test func valueTargetsTrainLikeLabels() throws {
        let classifier = try SpecParser.parse(json: """
        {"input": {"size": 3}, "layers": [{"type": "linear", "units": 4}, {"type": "tanh"}, {"type": "linear", "units": 3}],
         "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.3, "momentum": 0.5}, "seed": 5}
        """)
        var rng = RandomGenerator(seed: 9)
        let count = 37
        let x = (0..<count * 3).map { _ in Float(rng.normal()) }
        let y = (0..<count).map { _ in Int32(rng.below(3)) }
        let oneHot = y.flatMap { c in (0..<3).map { Float($0 == Int(c) ? 1 : 0) } }
        let labelled = try Dataset(features: x, labels: y, sampleShape: [3])
        let valued = try Dataset(features: x, targets: .values(oneHot, size: 3), sampleShape: [3])
        for shuffle in [true, false] {
            let a = try makeModel(spec: classifier), b = try makeModel(spec: classifier)
            for _ in 0..<2 {
                let ra = try a.trainEpoch(on: labelled, batchSize: 8, shuffle: shuffle)
                let rb = try b.trainEpoch(on: valued, batchSize: 8, shuffle: shuffle)
                #expect(abs(ra.meanLoss - rb.meanLoss) <= 1e-6 * ra.meanLoss)
            }
            for i in 0..<a.parameterNames.count {
                var pa = [Float](repeating: 0, count: a.parameterShapes[i].reduce(1, *)), pb = pa
                try pa.withUnsafeMutableBufferPointer { try a.readParameter(i, into: $0.baseAddress!, count: $0.count) }
                try pb.withUnsafeMutableBufferPointer { try b.readParameter(i, into: $0.baseAddress!, count: $0.count) }
                #expect(zip(pa, pb).allSatisfy { abs($0 - $1) <= 1e-5 }, "shuffle \(shuffle): \(a.parameterNames[i])")
            }
            #expect(try a.evaluate(on: labelled).accuracy == b.evaluate(on: valued).accuracy)
        }

        let regression = try SpecParser.parse(json: """
        {"input": {"size": 3}, "layers": [{"type": "linear", "units": 2}], "loss": "mse",
         "optimizer": {"type": "adam", "lr": 0.05}, "seed": 2}
        """)
        let t = (0..<count * 2).map { _ in Float(rng.normal()) }
        let data = try Dataset(features: x, targets: .values(t, size: 2), sampleShape: [3])
        let model = try makeModel(spec: regression), reference = try makeModel(spec: regression)
        let result = try model.trainEpoch(on: data, batchSize: 10, shuffle: false)
        var lossSum = 0.0
        try x.withUnsafeBufferPointer { xp in
            try t.withUnsafeBufferPointer { tp in
                for start in stride(from: 0, to: count, by: 10) {
                    let n = min(10, count - start)
                    lossSum += Double(n) * (try reference.trainStep(x: xp.baseAddress! + 3 * start, batch: n,
                                                                   targets: .values(tp.baseAddress! + 2 * start)))
                }
            }
        }
        #expect(result.meanLoss == lossSum / Double(count) && result.batches == 4)
        #expect(try model.evaluate(on: data).loss == reference.evaluate(on: data).loss)
        #expect(try model.evaluate(on: data).accuracy == nil)
        // A shuffled regression epoch trains too, on every sample once.
        #expect(try model.trainEpoch(on: data, batchSize: 10).samples == count)

        let wrongWidth = try Dataset(features: x, targets: .values(oneHot, size: 3), sampleShape: [3])
        expectFailure(.invalidArgument, "holds 3 target values per sample, but the model outputs 2") {
            try model.trainEpoch(on: wrongWidth, batchSize: 4)
        }
        expectFailure(.unsupported, "holds class labels, but the model's mse loss needs target values") {
            try model.evaluate(on: labelled)
        }
        var bad = t
        bad[5] = .nan
        let before = model.epoch
        try x.withUnsafeBufferPointer { xp in
            try bad.withUnsafeBufferPointer { tp in
                expectFailure(.numeric, "targets contain NaN") {
                    try model.trainEpoch(x: xp.baseAddress!, targets: .values(tp.baseAddress!), count: count, batchSize: 4)
                }
            }
        }
        #expect(model.epoch == before)
    }

    @Test func datasetValidatesItsParts() throws {
        expectFailure(.invalidArgument, "needs 6 feature values, got 5") {
            try Dataset(features: [1, 2, 3, 4, 5], labels: [0, 1], sampleShape: [3])
        }
        expectFailure(.invalidArgument, "label -1 of sample 1 is negative") {
            try Dataset(features: [1, 2], labels: [0, -1], sampleShape: [1])
        }
        expectFailure(.invalidArgument, "sample shape [0]") { try Dataset(features: [], labels: [], sampleShape: [0]) }

        let unlabelled = try Dataset(features: [1, 2, 3, 4, 5, 6], labels: nil, sampleShape: [3])
        #expect(unlabelled.count == 2 && !unlabelled.isLabelled && unlabelled.labels.isEmpty)
        expectFailure(.invalidArgument, "evaluation needs class labels") { try unlabelled.labels(for: "evaluation") }
        let labelled = try Dataset(features: [1, 2, 3, 4, 5, 6], labels: [1, 0], sampleShape: [3])
        #expect(try labelled.labels(for: "training") == [1, 0] && labelled.isLabelled && labelled.count == 2)
        expectFailure(.invalidArgument, "not a whole number of samples") {
            try Dataset(features: [1, 2, 3, 4, 5], labels: nil, sampleShape: [3])
        }
        // An unlabelled set still standardizes.
        let s = try Standardizer.fit(unlabelled, scale: 0.5)
        #expect(abs(s.mean - 1.75) < 1e-12 && abs(s.std - 0.5 * (35.0 / 12).squareRoot()) < 1e-12)
    }

    /// Training and evaluation on a Dataset refuse unlabelled sets and samples of the wrong
    /// size, and otherwise do what the pointer-based calls do.
    @Test func modelsTrainAndEvaluateOnLabelledSetsOnly() throws {
        let spec = try SpecParser.parse(json: """
        {"input": {"size": 2}, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
         "optimizer": {"type": "sgd", "lr": 0.5}, "seed": 3}
        """)
        let model = try makeModel(spec: spec), reference = try makeModel(spec: spec)
        let x: [Float] = [0, 0, 0, 1, 1, 0, 1, 1, 2, 2, -1, -1]
        let y: [Int32] = [0, 1, 1, 1, 1, 0]
        let data = try Dataset(features: x, labels: y, sampleShape: [2])

        let result = try model.trainEpoch(on: data, batchSize: 4, shuffle: false)
        let expected = try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { yp in
                try reference.trainEpoch(x: xp.baseAddress!, targets: .labels(yp.baseAddress!), count: 6, batchSize: 4, shuffle: false)
            }
        }
        #expect(result == expected && result.batches == 2 && result.samples == 6)
        let evaluation = try model.evaluate(on: data)
        let direct = try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { yp in try model.evaluate(x: xp.baseAddress!, count: 6, targets: .labels(yp.baseAddress!)) }
        }
        #expect(evaluation.loss == direct.loss && evaluation.accuracy == direct.accuracy)

        let unlabelled = try Dataset(features: x, labels: nil, sampleShape: [2])
        expectFailure(.invalidArgument, "unlabelled", "training needs class labels") { try model.trainEpoch(on: unlabelled, batchSize: 4) }
        expectFailure(.invalidArgument, "unlabelled", "evaluation needs class labels") { try model.evaluate(on: unlabelled) }
        let wide = try Dataset(features: x, labels: [0, 1, 0, 1], sampleShape: [3])
        let mismatch = ["samples hold 3 values (shape [3])", "model's input takes 2 (shape [2])"]
        expectFailure(.invalidArgument, mismatch[0], mismatch[1]) { try model.trainEpoch(on: wide, batchSize: 4) }
        expectFailure(.invalidArgument, mismatch[0], mismatch[1]) { try model.evaluate(on: wide) }
        expectFailure(.invalidArgument, "no samples") {
            try model.evaluate(on: try Dataset(features: [], labels: [], sampleShape: [2]))
        }
        #expect(model.epoch == 1)  // the refused calls changed nothing
    }
}

private extension String {
    func replacingOccurrences(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
