import CDeepLearningHDF5
import CHDF5
import Glibc

/// A thin, throwing layer over libhdf5's C API, just what checkpoints and datasets need.
///
/// Debian's libhdf5 is built without thread safety, so every use goes through
/// `HDF5File.locked`, one process-wide lock. HDF5's printing of its error stack to stderr
/// is turned off; a failed call's stack becomes part of our message instead.
final class HDF5File {
    let id: hid_t
    let path: String
    private var isOpen = true
    /// Strings are written variable-length (checkpoint format 1) instead of fixed-length.
    private var variableLengthStrings = false

    /// Runs `body` holding the library-wide HDF5 lock (a recursive mutex in C, which the
    /// isolated reader of untrusted files also takes around its fork()). Only files this
    /// process writes are opened here; untrusted files are read through `HDF5Image`.
    static func locked<R>(_ body: () throws(DLError) -> R) throws(DLError) -> R {
        dlh5i_lock()
        defer { dlh5i_unlock() }
        dlh5_silence_errors()
        return try body()
    }

    private init(id: hid_t, path: String) {
        self.id = id
        self.path = path
    }

    deinit { close() }

    /// Flushes and closes the file (also done on deinit).
    func close() {
        if isOpen { H5Fclose(id) }
        isOpen = false
    }

    /// Creates (truncates) a file for writing.
    static func create(_ path: String, variableLengthStrings: Bool = false) throws(DLError) -> HDF5File {
        let id = H5Fcreate(path, dlh5_f_acc_trunc(), dlh5_p_default(), dlh5_p_default())
        guard id >= 0 else { throw DLError(.io, "\(path): cannot create the file (\(stack()))") }
        let file = HDF5File(id: id, path: path)
        file.variableLengthStrings = variableLengthStrings
        return file
    }

    /// Opens an existing HDF5 file read-only.
    static func open(_ path: String) throws(DLError) -> HDF5File {
        guard access(path, R_OK) == 0 else {
            throw DLError(.io, "\(path): cannot open the file (\(String(cString: strerror(errno))))")
        }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw DLError(.io, "\(path): not a regular file")
        }
        guard H5Fis_hdf5(path) > 0 else { throw DLError(.format, "\(path): not an HDF5 file") }
        let id = H5Fopen(path, dlh5_f_acc_rdonly(), dlh5_p_default())
        guard id >= 0 else { throw DLError(.format, "\(path): cannot open the HDF5 file, it may be damaged (\(stack()))") }
        return HDF5File(id: id, path: path)
    }

    /// HDF5's error stack as one line, cleared afterwards.
    static func stack() -> String {
        var buffer = [CChar](repeating: 0, count: 1024)
        let text = buffer.withUnsafeMutableBufferPointer { b -> String in
            dlh5_error_message(b.baseAddress, b.count)
            return String(cString: b.baseAddress!)
        }
        let line = String(text.map { $0 == "\n" || $0 == "\t" ? " " : $0 })
        return line.isEmpty ? "no detail from HDF5" : line
    }

    func fail(_ what: String, kind: DLErrorKind = .format) -> DLError {
        DLError(kind, "\(path): \(what) (\(HDF5File.stack()))")
    }

    // MARK: Structure

    /// Whether every component of `path` ("a/b/c") exists.
    func exists(_ path: String) -> Bool {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            guard H5Lexists(id, prefix, dlh5_p_default()) > 0 else { return false }
        }
        return true
    }

    func createGroup(_ name: String) throws(DLError) {
        let g = H5Gcreate2(id, name, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard g >= 0 else { throw fail("cannot create group \(name)", kind: .io) }
        H5Gclose(g)
    }

    /// Names of the members of a group, in HDF5's order.
    func members(_ group: String) throws(DLError) -> [String] {
        var info = H5G_info_t()
        guard H5Gget_info_by_name(id, group, &info, dlh5_p_default()) >= 0 else { throw fail("cannot read group \(group)") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(id, group, H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, dlh5_p_default())
            guard n >= 0 else { throw fail("cannot read a member name of \(group)") }
            var buffer = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(id, group, H5_INDEX_NAME, H5_ITER_INC, i, &buffer, buffer.count, dlh5_p_default())
            names.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return names
    }

    // MARK: Datasets

    /// Writes a numeric dataset with `shape` from `count` elements at `data`.
    func write<T: DLScalar>(_ name: String, shape: [Int], _ data: UnsafePointer<T>) throws(DLError) {
        let fileType = T.self == Float.self ? dlh5_ieee_f32le() : dlh5_ieee_f64le()
        let memType = T.self == Float.self ? dlh5_native_float() : dlh5_native_double()
        try write(name, shape: shape, fileType: fileType, memType: memType, UnsafeRawPointer(data))
    }

    func write(_ name: String, values: [UInt64]) throws(DLError) {
        try values.withUnsafeBufferPointer { (p) throws(DLError) in
            try write(name, shape: [values.count], fileType: dlh5_std_u64le(), memType: dlh5_native_uint64(), UnsafeRawPointer(p.baseAddress!))
        }
    }

    private func write(_ name: String, shape: [Int], fileType: hid_t, memType: hid_t, _ data: UnsafeRawPointer) throws(DLError) {
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        guard space >= 0 else { throw fail("cannot describe the shape of \(name)", kind: .io) }
        defer { H5Sclose(space) }
        let d = H5Dcreate2(id, name, fileType, space, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard d >= 0 else { throw fail("cannot create dataset \(name)", kind: .io) }
        defer { H5Dclose(d) }
        guard H5Dwrite(d, memType, dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), data) >= 0 else {
            throw fail("cannot write dataset \(name)", kind: .io)
        }
    }

    /// A dataset's shape and whether its elements are floating point.
    func describe(_ name: String) throws(DLError) -> (shape: [Int], isFloat: Bool, typeClass: String) {
        guard exists(name) else { throw DLError(.format, "\(path): missing dataset \(name)") }
        let d = H5Dopen2(id, name, dlh5_p_default())
        guard d >= 0 else { throw fail("\(name) is not a dataset") }
        defer { H5Dclose(d) }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0, rank <= 32 else { throw fail("cannot read the shape of \(name)") }
        var dims = [hsize_t](repeating: 0, count: Int(max(rank, 1)))
        H5Sget_simple_extent_dims(space, &dims, nil)
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        let cls = H5Tget_class(type)
        let names: [H5T_class_t: String] = [H5T_INTEGER: "integer", H5T_FLOAT: "float", H5T_STRING: "string"]
        let shape = rank == 0 ? [] : dims.map { $0 > UInt64(Int.max) ? Int.max : Int($0) }
        return (shape, cls == H5T_FLOAT, names[cls] ?? "non-numeric")
    }

    /// Reads a dataset of exactly `count` numbers into `out`, converting to `T`.
    func read<T: DLScalar>(_ name: String, into out: UnsafeMutablePointer<T>, count: Int) throws(DLError) {
        let memType = T.self == Float.self ? dlh5_native_float() : dlh5_native_double()
        try read(name, memType: memType, count: count, UnsafeMutableRawPointer(out))
    }

    func readUInt64(_ name: String, count: Int) throws(DLError) -> [UInt64] {
        var values = [UInt64](repeating: 0, count: count)
        try values.withUnsafeMutableBufferPointer { (p) throws(DLError) in
            try read(name, memType: dlh5_native_uint64(), count: count, UnsafeMutableRawPointer(p.baseAddress!))
        }
        return values
    }

    private func read(_ name: String, memType: hid_t, count: Int, _ out: UnsafeMutableRawPointer) throws(DLError) {
        let d = H5Dopen2(id, name, dlh5_p_default())
        guard d >= 0 else { throw fail("missing dataset \(name)") }
        defer { H5Dclose(d) }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let n = H5Sget_simple_extent_npoints(space)
        guard n == Int64(count) else {
            throw DLError(.format, "\(path): dataset \(name) has \(n) elements, expected \(count)")
        }
        guard H5Dread(d, memType, dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), out) >= 0 else {
            throw fail("cannot read dataset \(name); the file may be truncated or damaged")
        }
    }

    // MARK: Strings and attributes

    /// A variable-length UTF-8 string type (what h5py writes for `str`), for reading.
    private func stringType() -> hid_t {
        let t = H5Tcopy(dlh5_c_s1())
        H5Tset_size(t, dlh5_variable())
        H5Tset_cset(t, H5T_CSET_UTF8)
        return t
    }

    /// A fixed-length, NUL-terminated UTF-8 string type that holds `string`. Checkpoints
    /// (format version 2) store strings so: reading them needs no global heap.
    private func fixedStringType(_ string: String) -> hid_t {
        let t = H5Tcopy(dlh5_c_s1())
        H5Tset_size(t, string.utf8.count + 1)
        H5Tset_strpad(t, H5T_STR_NULLTERM)
        H5Tset_cset(t, H5T_CSET_UTF8)
        return t
    }

    func write(_ name: String, string: String) throws(DLError) {
        let type = variableLengthStrings ? stringType() : fixedStringType(string)
        defer { H5Tclose(type) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let d = H5Dcreate2(id, name, type, space, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard d >= 0 else { throw fail("cannot create dataset \(name)", kind: .io) }
        defer { H5Dclose(d) }
        let ok = string.withCString { s in
            guard variableLengthStrings else { return H5Dwrite(d, type, dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), s) }
            var p: UnsafePointer<CChar>? = s
            return H5Dwrite(d, type, dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), &p)
        }
        guard ok >= 0 else { throw fail("cannot write dataset \(name)", kind: .io) }
    }

    /// Attaches a scalar attribute to the object at `object` ("/" for the file).
    func setAttribute(_ object: String, _ name: String, string: String) throws(DLError) {
        let type = variableLengthStrings ? stringType() : fixedStringType(string)
        defer { H5Tclose(type) }
        try setAttribute(object, name, type: type) { a in
            string.withCString { s in
                guard variableLengthStrings else { return H5Awrite(a, type, s) }
                var p: UnsafePointer<CChar>? = s
                return H5Awrite(a, type, &p)
            }
        }
    }

    func setAttribute(_ object: String, _ name: String, int: Int64) throws(DLError) {
        try setAttribute(object, name, type: dlh5_std_i64le()) { a in
            var v = int
            return H5Awrite(a, dlh5_native_int64(), &v)
        }
    }

    func setAttribute(_ object: String, _ name: String, double: Double) throws(DLError) {
        try setAttribute(object, name, type: dlh5_ieee_f64le()) { a in
            var v = double
            return H5Awrite(a, dlh5_native_double(), &v)
        }
    }

    private func setAttribute(_ object: String, _ name: String, type: hid_t, _ write: (hid_t) -> herr_t) throws(DLError) {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate_by_name(id, object, name, type, space, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard a >= 0 else { throw fail("cannot create attribute \(object)@\(name)", kind: .io) }
        defer { H5Aclose(a) }
        guard write(a) >= 0 else { throw fail("cannot write attribute \(object)@\(name)", kind: .io) }
    }

    /// Whether `object` has attribute `name` (attributes added in later versions of a layout).
    func hasAttribute(_ object: String, _ name: String) -> Bool {
        (object == "/" || exists(object)) && H5Aexists_by_name(id, object, name, dlh5_p_default()) > 0
    }

    /// Opens attribute `name` of `object`, or throws naming what is missing.
    private func withAttribute<R>(_ object: String, _ name: String, _ body: (hid_t) throws(DLError) -> R) throws(DLError) -> R {
        guard hasAttribute(object, name) else {
            throw DLError(.format, "\(path): missing attribute \"\(name)\" on \(object)")
        }
        let a = H5Aopen_by_name(id, object, name, dlh5_p_default(), dlh5_p_default())
        guard a >= 0 else { throw fail("cannot open attribute \(object)@\(name)") }
        defer { H5Aclose(a) }
        let space = H5Aget_space(a)
        defer { H5Sclose(space) }
        guard H5Sget_simple_extent_npoints(space) == 1 else {
            throw DLError(.format, "\(path): attribute \(object)@\(name) must hold a single value")
        }
        return try body(a)
    }

    func attributeInt(_ object: String, _ name: String) throws(DLError) -> Int64 {
        try withAttribute(object, name) { (a) throws(DLError) in
            try requireClass(H5Aget_type(a), H5T_INTEGER, "\(object)@\(name)", "an integer")
            var v: Int64 = 0
            guard H5Aread(a, dlh5_native_int64(), &v) >= 0 else { throw fail("cannot read attribute \(object)@\(name)") }
            return v
        }
    }

    func attributeDouble(_ object: String, _ name: String) throws(DLError) -> Double {
        try withAttribute(object, name) { (a) throws(DLError) in
            let type = H5Aget_type(a)
            defer { H5Tclose(type) }
            let cls = H5Tget_class(type)
            guard cls == H5T_FLOAT || cls == H5T_INTEGER else {
                throw DLError(.format, "\(path): attribute \(object)@\(name) must be a number")
            }
            var v = 0.0
            guard H5Aread(a, dlh5_native_double(), &v) >= 0 else { throw fail("cannot read attribute \(object)@\(name)") }
            return v
        }
    }

    func attributeString(_ object: String, _ name: String) throws(DLError) -> String {
        try withAttribute(object, name) { (a) throws(DLError) in
            let type = H5Aget_type(a)
            defer { H5Tclose(type) }
            return try readString(type, "\(object)@\(name)") { t, p in H5Aread(a, t, p) }
        }
    }

    /// A scalar string dataset, variable- or fixed-length.
    func readString(_ name: String) throws(DLError) -> String {
        guard exists(name) else { throw DLError(.format, "\(path): missing dataset \(name)") }
        let d = H5Dopen2(id, name, dlh5_p_default())
        guard d >= 0 else { throw fail("cannot open dataset \(name)") }
        defer { H5Dclose(d) }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        guard H5Sget_simple_extent_npoints(space) == 1 else {
            throw DLError(.format, "\(path): dataset \(name) must hold a single string")
        }
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        return try readString(type, name) { t, p in H5Dread(d, t, dlh5_s_all(), dlh5_s_all(), dlh5_p_default(), p) }
    }

    private func readString(_ type: hid_t, _ what: String, _ read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws(DLError) -> String {
        guard H5Tget_class(type) == H5T_STRING else { throw DLError(.format, "\(path): \(what) must be a string") }
        if H5Tis_variable_str(type) > 0 {
            let mem = stringType()
            defer { H5Tclose(mem) }
            var p: UnsafeMutablePointer<CChar>? = nil
            guard read(mem, &p) >= 0 else { throw fail("cannot read \(what)") }
            defer { free(p) }
            return p.map { String(cString: $0) } ?? ""
        }
        let size = H5Tget_size(type)
        guard size > 0, size < 1 << 30 else { throw DLError(.format, "\(path): \(what) has an invalid string size") }
        let mem = H5Tcopy(dlh5_c_s1())
        defer { H5Tclose(mem) }
        H5Tset_size(mem, size + 1)
        var buffer = [CChar](repeating: 0, count: size + 1)
        let ok = buffer.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
        guard ok >= 0 else { throw fail("cannot read \(what)") }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private func requireClass(_ type: hid_t, _ cls: H5T_class_t, _ what: String, _ expected: String) throws(DLError) {
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == cls else { throw DLError(.format, "\(path): \(what) must be \(expected)") }
    }
}
