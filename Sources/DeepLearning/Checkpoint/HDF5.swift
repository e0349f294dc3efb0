import CDeepLearningHDF5
import CHDF5
import Glibc

/// A thin, throwing layer over libhdf5's C API for writing checkpoints. Files are only
/// ever read through `HDF5Image` (in a child process): they may be crafted.
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

    func createGroup(_ name: String) throws(DLError) {
        let g = H5Gcreate2(id, name, dlh5_p_default(), dlh5_p_default(), dlh5_p_default())
        guard g >= 0 else { throw fail("cannot create group \(name)", kind: .io) }
        H5Gclose(g)
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

    // MARK: Strings and attributes

    /// A variable-length UTF-8 string type (what h5py writes for `str`; format 1).
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
}
