import CDeepLearningHDF5
import Glibc

/// What an untrusted HDF5 file holds, read in a child process (see dl_hdf5_isolated.h)
/// and parsed here with every length and count checked against the stream's bounds.
///
/// Loaders (checkpoints, HDF5 data sets) query this instead of libhdf5: a crafted file can
/// crash or hang libhdf5, which then happens in the child, ends it, and becomes a `.format`
/// error here within the deadline; this process never runs libhdf5 on the file, so it never
/// follows the file's internal pointers. The lock shared by all HDF5 calls is held only
/// while the child is forked, so a slow or hung load does not block other threads' saves.
final class HDF5Image {
    enum Attribute {
        case int(Int64), double(Double), string(String), other(points: UInt64)
    }
    struct Dataset {
        /// "integer", "float", "string" or "non-numeric".
        var typeClass: String
        var typeSize: Int
        var isSigned: Bool
        var shape: [Int]
        var count: Int
        /// What the values are stored as: "b" UInt8, "l" Int64, "q" UInt64, "f" Float,
        /// "d" Double, "s" characters, "" none.
        var payload: UInt8
        var offset: Int
        var bytes: Int
    }

    let path: String
    private let buffer: UnsafeMutableRawPointer
    private let length: Int
    private(set) var groups: [String: [String]] = [:]
    private(set) var attributes: [String: [String: Attribute]] = [:]
    private(set) var datasets: [String: Dataset] = [:]

    deinit { free(buffer) }

    /// Reads `roots` of the file at `path` (recursively with `recursive`).
    /// Throws `.io` when the file cannot be read, `.format` when it is not HDF5, is damaged,
    /// crashes or hangs the reader, or claims more data than it holds; `.noMemory`.
    init(path: String, roots: [String], recursive: Bool) throws(DLError) {
        self.path = path
        guard access(path, R_OK) == 0 else {
            throw DLError(.io, "\(path): cannot open the file (\(String(cString: strerror(errno))))")
        }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw DLError(.io, "\(path): not a regular file")
        }
        let fileSize = Int64(info.st_size)
        guard HDF5Image.hasSignature(path) else { throw DLError(.format, "\(path): not an HDF5 file") }
        // The stream holds the file's data, converted to at most 8 bytes per element, and
        // a compressed dataset may expand up to 1100:1 (the reader checks each dataset
        // against that before reading it); names and attributes add a little. The buffer
        // grows as bytes arrive, so this cap only stops a stream that would outgrow it.
        let (scaled, overflow) = Int(fileSize).multipliedReportingOverflow(by: 8 * 1100)
        let maxBytes = overflow ? 1 << 40 : min(scaled + (1 << 24), 1 << 40)
        var out: UnsafeMutablePointer<UInt8>? = nil
        var outLength = 0
        var message = [CChar](repeating: 0, count: 1024)
        let cRoots = roots.map { strdup($0) }
        defer { cRoots.forEach { free($0) } }
        let status = cRoots.map { UnsafePointer($0) }.withUnsafeBufferPointer { r in
            message.withUnsafeMutableBufferPointer { m in
                dlh5i_read(path, r.baseAddress, Int32(r.count), recursive ? 1 : 0, fileSize,
                           maxBytes, &out, &outLength, m.baseAddress, m.count)
            }
        }
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        switch Int(status) {
        case Int(DLH5I_OK): break
        case Int(DLH5I_NOMEM): throw DLError(.noMemory, "\(path): \(text)")
        case Int(DLH5I_SYSTEM): throw DLError(.io, "\(path): \(text)")
        default: throw DLError(.format, "\(path): \(text)")
        }
        guard let out else { throw DLError(.internal, "\(path): the HDF5 reader returned no data") }
        buffer = UnsafeMutableRawPointer(out)
        length = outLength
        try parse()
    }

    /// HDF5's signature at offset 0 (a user block may move it to 512, 1024, ... ; those
    /// offsets are checked too, as H5Fis_hdf5 does), read without libhdf5.
    private static func hasSignature(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        var head = [UInt8](repeating: 0, count: 8)
        var offset = 0
        while offset <= 1 << 30 {
            guard pread(fd, &head, 8, off_t(offset)) == 8 else { return false }
            if head == signature { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }

    // MARK: The stream

    /// A malformed stream, or (with a message) the reader's report of a failure.
    private struct Malformed: Error { var message: String? = nil }

    private var cursor = 0

    private func parse() throws(DLError) {
        do throws(Malformed) {
            guard length >= 6, memcmp(buffer, "DLH5I1", 6) == 0 else { throw Malformed() }
            cursor = 6
            while true {
                switch try u8() {
                case UInt8(ascii: "Z"):
                    guard cursor == length else { throw Malformed() }
                    return
                case UInt8(ascii: "E"):
                    throw Malformed(message: try string())
                case UInt8(ascii: "G"):
                    let name = try string()
                    let n = try u32()
                    guard n <= (length - cursor) / 4 else { throw Malformed() }
                    var members: [String] = []
                    for _ in 0..<n { members.append(try string()) }
                    groups[name] = members
                case UInt8(ascii: "A"):
                    let object = try string(), name = try string()
                    let kind = try u8(), points = try u64()
                    let value: Attribute
                    switch kind {
                    case UInt8(ascii: "i"): value = .int(Int64(bitPattern: try u64()))
                    case UInt8(ascii: "f"): value = .double(Double(bitPattern: try u64()))
                    case UInt8(ascii: "s"): value = .string(try string())
                    case UInt8(ascii: "o"): value = .other(points: points)
                    default: throw Malformed()
                    }
                    attributes[object, default: [:]][name] = value
                case UInt8(ascii: "D"):
                    try dataset()
                default:
                    throw Malformed()
                }
            }
        } catch {
            if let message = error.message { throw DLError(.format, "\(path): \(message)") }
            throw DLError(.format, "\(path): the HDF5 reader's output is malformed at byte \(cursor); the file is damaged")
        }
    }

    private func dataset() throws(Malformed) {
        let name = try string()
        let cls = try u8()
        let typeSize = try u32()
        let isSigned = try u8() != 0
        let rank = try u32()
        guard rank <= 32 else { throw Malformed() }
        var shape: [Int] = []
        var count = 1
        var countOverflows = false
        for _ in 0..<rank {
            let d = try u64()
            // A dimension beyond Int is kept as Int.max: the loaders then refuse the shape.
            let dim = d > UInt64(Int.max) ? Int.max : Int(d)
            shape.append(dim)
            let (p, o) = count.multipliedReportingOverflow(by: dim)
            countOverflows = countOverflows || o
            count = o ? Int.max : p
        }
        let payload = try u8()
        let bytes = try u64()
        guard bytes <= UInt64(length - cursor) else { throw Malformed() }
        let elementSize: Int
        switch payload {
        case 0: elementSize = 0
        case UInt8(ascii: "b"): elementSize = 1
        case UInt8(ascii: "f"): elementSize = 4
        case UInt8(ascii: "l"), UInt8(ascii: "q"), UInt8(ascii: "d"): elementSize = 8
        case UInt8(ascii: "s"): elementSize = -1
        default: throw Malformed()
        }
        if elementSize == 0 { guard bytes == 0 else { throw Malformed() } }
        if elementSize > 0 {
            let (expected, o) = count.multipliedReportingOverflow(by: elementSize)
            guard !countOverflows, !o, UInt64(expected) == bytes else { throw Malformed() }
        }
        let typeClass = cls == UInt8(ascii: "i") ? "integer" : cls == UInt8(ascii: "f") ? "float"
            : cls == UInt8(ascii: "s") ? "string" : "non-numeric"
        datasets[name] = Dataset(typeClass: typeClass, typeSize: Int(typeSize), isSigned: isSigned, shape: shape,
                                 count: count, payload: payload, offset: cursor, bytes: Int(bytes))
        cursor += Int(bytes)
    }

    private func u8() throws(Malformed) -> UInt8 {
        guard length - cursor >= 1 else { throw Malformed() }
        defer { cursor += 1 }
        return buffer.load(fromByteOffset: cursor, as: UInt8.self)
    }
    private func u32() throws(Malformed) -> Int {
        guard length - cursor >= 4 else { throw Malformed() }
        defer { cursor += 4 }
        return Int(buffer.loadUnaligned(fromByteOffset: cursor, as: UInt32.self))
    }
    private func u64() throws(Malformed) -> UInt64 {
        guard length - cursor >= 8 else { throw Malformed() }
        defer { cursor += 8 }
        return buffer.loadUnaligned(fromByteOffset: cursor, as: UInt64.self)
    }
    private func string() throws(Malformed) -> String {
        let n = try u32()
        guard n <= length - cursor else { throw Malformed() }
        defer { cursor += n }
        return text(at: cursor, count: n)
    }
    private func text(at offset: Int, count: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(start: buffer + offset, count: count), as: UTF8.self)
    }

    // MARK: Queries (the subset of HDF5File's that loaders use)

    /// Whether a group or dataset `name` ("a/b") was read.
    func exists(_ name: String) -> Bool { groups[name] != nil || datasets[name] != nil }

    /// Names of the members of a group, in HDF5's (name) order.
    func members(_ group: String) throws(DLError) -> [String] {
        guard let m = groups[group] else { throw DLError(.format, "\(path): missing group \(group)") }
        return m
    }

    private func dataset(_ name: String) throws(DLError) -> Dataset {
        guard let d = datasets[name] else {
            throw DLError(.format, groups[name] != nil ? "\(path): \(name) is not a dataset" : "\(path): missing dataset \(name)")
        }
        return d
    }

    /// A dataset's shape and whether its elements are floating point.
    func describe(_ name: String) throws(DLError) -> (shape: [Int], isFloat: Bool, typeClass: String) {
        let d = try dataset(name)
        return (d.shape, d.typeClass == "float", d.typeClass)
    }

    /// Size in bytes and signedness of an integer dataset's elements; nil for other types.
    func integerLayout(_ name: String) throws(DLError) -> (size: Int, isSigned: Bool)? {
        let d = try dataset(name)
        return d.typeClass == "integer" ? (d.typeSize, d.isSigned) : nil
    }

    /// Copies dataset `name`, of exactly `count` numbers, into `out`, converted to `T`
    /// (as libhdf5 converts: integers exactly where `T` can hold them, doubles rounded).
    func read<T: DLScalar>(_ name: String, into out: UnsafeMutablePointer<T>, count: Int) throws(DLError) {
        let d = try dataset(name)
        guard d.count == count else {
            throw DLError(.format, "\(path): dataset \(name) has \(d.count) elements, expected \(count)")
        }
        let p = UnsafeRawPointer(buffer + d.offset)
        switch d.payload {
        case UInt8(ascii: "b"): for i in 0..<count { out[i] = T(Double(p.load(fromByteOffset: i, as: UInt8.self))) }
        case UInt8(ascii: "f"):
            if T.self == Float.self { memcpy(out, p, 4 * count) }
            else { for i in 0..<count { out[i] = T(Double(p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self))) } }
        case UInt8(ascii: "d"):
            if T.self == Double.self { memcpy(out, p, 8 * count) }
            else { for i in 0..<count { out[i] = T(p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) } }
        case UInt8(ascii: "l"): for i in 0..<count { out[i] = T(Double(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case UInt8(ascii: "q"): for i in 0..<count { out[i] = T(Double(p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        default: throw DLError(.format, "\(path): dataset \(name) holds \(d.typeClass) values, expected numbers")
        }
    }

    /// Dataset `name`'s integers, which must number `count`, each as it is stored (an
    /// unsigned value above Int64.max is returned as nil, so callers can say it is out of range).
    func readIntegers(_ name: String, count: Int) throws(DLError) -> [Int64?] {
        let d = try dataset(name)
        guard d.count == count else {
            throw DLError(.format, "\(path): dataset \(name) has \(d.count) elements, expected \(count)")
        }
        let p = UnsafeRawPointer(buffer + d.offset)
        switch d.payload {
        case UInt8(ascii: "b"): return (0..<count).map { Int64(p.load(fromByteOffset: $0, as: UInt8.self)) }
        case UInt8(ascii: "l"): return (0..<count).map { p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
        case UInt8(ascii: "q"):
            return (0..<count).map { i -> Int64? in
                let v = p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                return v > UInt64(Int64.max) ? nil : Int64(v)
            }
        default: throw DLError(.format, "\(path): dataset \(name) holds \(d.typeClass) values, expected integers")
        }
    }

    func readUInt64(_ name: String, count: Int) throws(DLError) -> [UInt64] {
        let d = try dataset(name)
        guard d.count == count else {
            throw DLError(.format, "\(path): dataset \(name) has \(d.count) elements, expected \(count)")
        }
        let p = UnsafeRawPointer(buffer + d.offset)
        switch d.payload {
        case UInt8(ascii: "q"), UInt8(ascii: "l"): return (0..<count).map { p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self) }
        case UInt8(ascii: "b"): return (0..<count).map { UInt64(p.load(fromByteOffset: $0, as: UInt8.self)) }
        default: throw DLError(.format, "\(path): dataset \(name) holds \(d.typeClass) values, expected integers")
        }
    }

    /// A scalar string dataset, variable- or fixed-length.
    func readString(_ name: String) throws(DLError) -> String {
        let d = try dataset(name)
        guard d.count == 1 else { throw DLError(.format, "\(path): dataset \(name) must hold a single string") }
        guard d.payload == UInt8(ascii: "s") else { throw DLError(.format, "\(path): \(name) must be a string") }
        return text(at: d.offset, count: d.bytes)
    }

    /// Whether `object` has attribute `name` (attributes added in later versions of a layout).
    func hasAttribute(_ object: String, _ name: String) -> Bool { attributes[object]?[name] != nil }

    private func attribute(_ object: String, _ name: String) throws(DLError) -> Attribute {
        guard let a = attributes[object]?[name] else {
            throw DLError(.format, "\(path): missing attribute \"\(name)\" on \(object)")
        }
        if case .other(let points) = a, points != 1 {
            throw DLError(.format, "\(path): attribute \(object)@\(name) must hold a single value")
        }
        return a
    }

    func attributeInt(_ object: String, _ name: String) throws(DLError) -> Int64 {
        guard case .int(let v) = try attribute(object, name) else {
            throw DLError(.format, "\(path): \(object)@\(name) must be an integer")
        }
        return v
    }

    func attributeDouble(_ object: String, _ name: String) throws(DLError) -> Double {
        switch try attribute(object, name) {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: throw DLError(.format, "\(path): attribute \(object)@\(name) must be a number")
        }
    }

    func attributeString(_ object: String, _ name: String) throws(DLError) -> String {
        guard case .string(let s) = try attribute(object, name) else {
            throw DLError(.format, "\(path): \(object)@\(name) must be a string")
        }
        return s
    }
}
