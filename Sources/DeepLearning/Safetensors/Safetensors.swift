import CJSONC
import Glibc

/// The safetensors file format (Hugging Face's, which `safetensors.torch.save_file` writes):
///
///     8 bytes     N, the header's length, an unsigned little-endian integer
///     N bytes     the header: a JSON object, possibly padded with trailing spaces, mapping
///                 each tensor's name to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
///                 and the optional key "__metadata__" to an object of string values
///     the rest    the tensors' bytes, little-endian, row-major; tensor t occupies bytes
///                 b..<e counted from the end of the header
///
/// Files come from strangers, so `SafetensorsFile.open` checks everything before it
/// allocates anything a file decides: the header length against the file's size and
/// `maxHeaderBytes`, every entry's keys and types, that each tensor's byte range is
/// exactly product(shape) times its dtype's size, lies within the data, and that the
/// ranges neither overlap nor leave bytes unclaimed (the reference reader's rule). Errors
/// are `.format` and name the file and the tensor.
public enum Safetensors {
    /// Largest header read: json-c holds the parsed header in memory several times its
    /// size. The reference reader allows 100 MB; a model this library builds needs a few KiB.
    public static let maxHeaderBytes = SpecParser.maxBytes
    /// The metadata key under which an exported file carries its model's spec.
    public static let specKey = "deeplearning.spec"

    /// The element types of the format, with their sizes in bytes. Sub-byte types (F4, F6)
    /// are refused by name.
    public static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8, "C64": 8,
    ]
    /// The dtypes a model's floating-point tensors are read from (converted to its dtype).
    public static let floatDtypes = ["F16", "BF16", "F32", "F64"]
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    /// Byte range within the data section (after the header).
    public var begin: Int
    public var end: Int
    /// product(shape): the number of elements.
    public var count: Int
}

/// A safetensors file opened for reading: its validated header, and the file itself for
/// reading tensors one at a time (nothing but the header is held in memory).
public final class SafetensorsFile {
    public let path: String
    /// The tensors, in the order of their data.
    public let entries: [SafetensorsEntry]
    /// `__metadata__`, in file order.
    public let metadata: [(key: String, value: String)]
    /// Where the data section starts in the file (8 + the header's length).
    public let dataStart: Int
    public let dataSize: Int
    private let file: UnsafeMutablePointer<FILE>

    /// Opens and validates `path`.
    public init(path: String) throws(DLError) {
        self.path = path
        guard let file = fopen(path, "rb") else {
            throw DLError(.io, "\(path): cannot open the safetensors file: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fileno(file), &info) == 0 else {
            let reason = String(cString: strerror(errno))
            fclose(file)
            throw DLError(.io, "\(path): cannot read the safetensors file: \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            fclose(file)
            throw DLError(.io, "\(path): not a regular file")
        }
        let size = Int(info.st_size)
        do throws(DLError) {
            var prefix = [UInt8](repeating: 0, count: 8)
            guard size >= 8, fread(&prefix, 1, 8, file) == 8 else {
                throw DLError(.format, "\(path): \(size) bytes, too short for a safetensors file (it starts with an 8-byte header length)")
            }
            let n = Safetensors.headerLength(prefix)
            let limit = min(size - 8, Safetensors.maxHeaderBytes)
            guard n <= UInt64(limit) else {
                throw DLError(.format, n > UInt64(size - 8)
                    ? "\(path): the header length \(n) is beyond the file's \(size - 8) bytes after it (not a safetensors file, or a truncated one)"
                    : "\(path): the header length \(n) exceeds this reader's limit of \(Safetensors.maxHeaderBytes) bytes")
            }
            var header = [UInt8](repeating: 0, count: Int(n))
            guard fread(&header, 1, Int(n), file) == Int(n) else {
                throw DLError(.io, "\(path): cannot read the safetensors header: \(String(cString: strerror(errno)))")
            }
            let parsed = try Safetensors.parseHeader(header, dataSize: size - 8 - Int(n), source: path)
            self.entries = parsed.entries
            self.metadata = parsed.metadata
            self.dataStart = 8 + Int(n)
            self.dataSize = size - 8 - Int(n)
            self.file = file
        } catch {
            fclose(file)
            throw error
        }
    }

    deinit { fclose(file) }

    /// The entry named `name`.
    public func entry(_ name: String) -> SafetensorsEntry? { entries.first { $0.name == name } }

    /// The metadata value of `key`.
    public func metadata(_ key: String) -> String? { metadata.first { $0.key == key }?.value }

    /// Reads the bytes of `entry` into `out` (`entry.end - entry.begin` bytes).
    public func read(_ entry: SafetensorsEntry, into out: UnsafeMutableRawPointer) throws(DLError) {
        let n = entry.end - entry.begin
        guard n > 0 else { return }
        guard fseeko(file, off_t(dataStart + entry.begin), SEEK_SET) == 0, fread(out, 1, n, file) == n else {
            throw DLError(.io, "\(path): cannot read tensor \"\(entry.name)\" (\(n) bytes at \(dataStart + entry.begin)): the file changed or cannot be read")
        }
    }
}

extension Safetensors {
    /// The header length the first 8 bytes give (little-endian).
    static func headerLength(_ bytes: [UInt8]) -> UInt64 {
        var n: UInt64 = 0
        for i in (0..<8).reversed() { n = n << 8 | UInt64(bytes[i]) }
        return n
    }

    /// Validates `header` (the JSON text) for a data section of `dataSize` bytes.
    public static func parseHeader(_ header: [UInt8], dataSize: Int, source: String)
        throws(DLError) -> (entries: [SafetensorsEntry], metadata: [(key: String, value: String)]) {
        func fail(_ message: String) -> DLError { DLError(.format, "\(source): \(message)") }
        guard header.first == UInt8(ascii: "{") else {
            throw fail("the header does not start with \"{\"; not a safetensors file")
        }
        let root: OpaquePointer
        do throws(DLError) { root = try SpecParser.tokenize(header, "\(source): header") } catch {
            throw DLError(.format, error.message)
        }
        defer { json_object_put(root) }
        var entries: [SafetensorsEntry] = []
        var metadata: [(key: String, value: String)] = []
        // (json-c keeps the last of repeated keys, as the reference reader does.)
        for member in SpecReader.members(root) {
            if member.key == "__metadata__" {
                if member.value == nil { continue }
                guard json_object_get_type(member.value) == json_type_object else {
                    throw fail("__metadata__ must be an object of strings, got \(SpecReader.describe(member.value))")
                }
                for item in SpecReader.members(member.value) {
                    guard let value = SpecReader.string(item.value) else {
                        throw fail("__metadata__ \"\(item.key)\" must be a string, got \(SpecReader.describe(item.value))")
                    }
                    metadata.append((item.key, value))
                }
                continue
            }
            entries.append(try entry(member.key, member.value, dataSize: dataSize, fail: fail))
        }
        // Sorted by where they start, each must start where the one before ends, and the
        // last end where the data does: no overlap, no unclaimed bytes.
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position = 0
        var previous: SafetensorsEntry? = nil
        for e in entries {
            if e.begin < position, let previous {
                throw fail("tensors \"\(previous.name)\" (bytes \(previous.begin)..<\(previous.end)) and \"\(e.name)\" (bytes \(e.begin)..<\(e.end)) overlap")
            }
            if e.begin > position {
                throw fail("data bytes \(position)..<\(e.begin) belong to no tensor (the data must be the tensors' bytes, back to back)")
            }
            position = e.end
            previous = e
        }
        guard position == dataSize else {
            throw fail("the tensors' data ends at byte \(position), but the file holds \(dataSize) bytes of data after the header")
        }
        return (entries, metadata)
    }

    private static func entry(_ name: String, _ value: JSONValue, dataSize: Int,
                              fail: (String) -> DLError) throws(DLError) -> SafetensorsEntry {
        let what = "tensor \"\(name)\""
        guard json_object_get_type(value) == json_type_object else {
            throw fail("\(what): expected an object with dtype, shape and data_offsets, got \(SpecReader.describe(value))")
        }
        let members = SpecReader.members(value)
        for m in members where !["dtype", "shape", "data_offsets"].contains(m.key) {
            throw fail("\(what): unknown key \"\(m.key)\" (an entry has dtype, shape and data_offsets)")
        }
        guard let dtypeValue = SpecReader.member("dtype", members) else { throw fail("\(what): no dtype") }
        guard let dtype = SpecReader.string(dtypeValue) else { throw fail("\(what): dtype must be a string, got \(SpecReader.describe(dtypeValue))") }
        guard let size = dtypeSizes[dtype] else {
            let known = dtypeSizes.keys.sorted().joined(separator: ", ")
            throw fail("\(what): dtype \"\(dtype)\" is not one this reader knows (\(known))")
        }
        guard let shapeValue = SpecReader.member("shape", members) else { throw fail("\(what): no shape") }
        guard json_object_get_type(shapeValue) == json_type_array else {
            throw fail("\(what): shape must be an array of non-negative integers, got \(SpecReader.describe(shapeValue))")
        }
        var shape: [Int] = []
        var count = 1
        for d in SpecReader.elements(shapeValue) {
            guard let n = integer(d) else {
                throw fail("\(what): shape must be an array of non-negative integers, got \(SpecReader.describe(shapeValue))")
            }
            shape.append(n)
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow, product <= dataSize else {
                throw fail("\(what): shape \(SpecReader.describe(shapeValue)) has more elements than the file holds bytes")
            }
            count = product
        }
        guard let offsetsValue = SpecReader.member("data_offsets", members) else { throw fail("\(what): no data_offsets") }
        let offsets = SpecReader.elements(offsetsValue)
        guard json_object_get_type(offsetsValue) == json_type_array, offsets.count == 2,
              let begin = integer(offsets[0]), let end = integer(offsets[1]) else {
            throw fail("\(what): data_offsets must be two non-negative integers [begin, end], got \(SpecReader.describe(offsetsValue))")
        }
        guard begin <= end, end <= dataSize else {
            throw fail("\(what): data_offsets [\(begin), \(end)] are outside the \(dataSize) bytes of data, or reversed")
        }
        // count <= dataSize, so count * size cannot overflow.
        guard end - begin == count * size else {
            throw fail("\(what): data_offsets [\(begin), \(end)] span \(end - begin) bytes, but shape \(shape) of \(dtype) needs \(count * size)")
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end, count: count)
    }

    /// A JSON integer >= 0 that fits an Int, or nil.
    private static func integer(_ value: JSONValue) -> Int? {
        guard json_object_get_type(value) == json_type_int else { return nil }
        let n = json_object_get_int64(value)
        // json-c saturates larger integers at Int64.max.
        guard n >= 0, n < Int64.max else { return nil }
        return Int(n)
    }
}

// MARK: - Writing

/// A tensor to write: its name, dtype ("F32", "F64", "I64"), shape and little-endian bytes.
public struct SafetensorsTensor {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// `values` as F32 or F64 (the type of S).
    public init<S: DLScalar>(name: String, shape: [Int], values: [S]) {
        var bytes: [UInt8] = []
        if S.self == Float.self {
            bytes.reserveCapacity(values.count * 4)
            for v in values { withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        } else {
            bytes.reserveCapacity(values.count * 8)
            for v in values { withUnsafeBytes(of: Double(v).bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        }
        self.init(name: name, dtype: S.self == Float.self ? "F32" : "F64", shape: shape, bytes: bytes)
    }

    /// One int64 scalar (shape []), as PyTorch stores `num_batches_tracked`.
    public init(name: String, int64 value: Int64) {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        self.init(name: name, dtype: "I64", shape: [], bytes: bytes)
    }
}

extension Safetensors {
    /// The file's bytes: the header, padded with spaces to a multiple of 8, then the
    /// tensors, those of larger elements first (otherwise in the given order). As with the
    /// reference writer, every tensor then starts at a multiple of its element size, so
    /// that readers may use the data in place (torch.frombuffer needs aligned memory).
    public static func encode(_ tensors: [SafetensorsTensor], metadata: [(String, String)]) throws(DLError) -> [UInt8] {
        let tensors = tensors.enumerated().sorted { a, b in
            let (x, y) = (dtypeSizes[a.element.dtype] ?? 1, dtypeSizes[b.element.dtype] ?? 1)
            return x != y ? x > y : a.offset < b.offset
        }.map(\.element)
        let root = json_object_new_object()
        defer { json_object_put(root) }
        if !metadata.isEmpty {
            let m = json_object_new_object()
            for (key, value) in metadata { json_object_object_add(m, key, json_object_new_string_len(value, Int32(clamping: value.utf8.count))) }
            json_object_object_add(root, "__metadata__", m)
        }
        var offset = 0
        for t in tensors {
            let entry = json_object_new_object()
            json_object_object_add(entry, "dtype", json_object_new_string(t.dtype))
            let shape = json_object_new_array()
            for d in t.shape { json_object_array_add(shape, json_object_new_int64(Int64(d))) }
            json_object_object_add(entry, "shape", shape)
            let offsets = json_object_new_array()
            json_object_array_add(offsets, json_object_new_int64(Int64(offset)))
            offset += t.bytes.count
            json_object_array_add(offsets, json_object_new_int64(Int64(offset)))
            json_object_object_add(entry, "data_offsets", offsets)
            json_object_object_add(root, t.name, entry)
        }
        guard let text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) else {
            throw DLError(.noMemory, "out of memory writing a safetensors header")
        }
        var header = Array(UnsafeBufferPointer(start: UnsafeRawPointer(text).assumingMemoryBound(to: UInt8.self), count: strlen(text)))
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        guard header.count <= maxHeaderBytes else {
            throw DLError(.unsupported, "the safetensors header would be \(header.count) bytes, beyond the limit of \(maxHeaderBytes)")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += header
        for t in tensors { bytes += t.bytes }
        return bytes
    }

    /// Writes `files` (path, bytes) so that each either keeps its old content or has the
    /// new one entirely: each is written under a temporary name beside it and flushed to
    /// disk, then all are renamed into place. On failure the temporary files are removed.
    static func writeAtomically(_ files: [(path: String, bytes: [UInt8])]) throws(DLError) {
        var temporaries: [String] = []
        defer { for t in temporaries { unlink(t) } }
        for (path, bytes) in files {
            let temporary = "\(path).dltmp-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw DLError(.io, "\(path): cannot create the file: \(String(cString: strerror(errno)))") }
            temporaries.append(temporary)
            var written = 0
            var failure: String? = nil
            bytes.withUnsafeBytes { b in
                while written < b.count {
                    let n = write(fd, b.baseAddress! + written, b.count - written)
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = String(cString: strerror(errno))
                        return
                    }
                    written += n
                }
            }
            if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
            if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
            if let failure { throw DLError(.io, "\(path): cannot write the file: \(failure)") }
        }
        for (i, (path, _)) in files.enumerated() {
            guard rename(temporaries[i], path) == 0 else {
                throw DLError(.io, "\(path): cannot replace the file: \(String(cString: strerror(errno)))")
            }
        }
        temporaries = []
    }
}
