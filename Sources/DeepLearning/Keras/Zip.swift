import CZip
import Glibc

/// A zip archive read through libzip, for Keras's `.keras` files. The archive may be
/// crafted: every entry's size is checked before anything is extracted (a zip bomb
/// claims a small compressed size and expands without end), and a read must deliver
/// exactly the size the directory states (libzip checks the CRC at the end of an entry).
final class ZipReader {
    let path: String
    private let archive: OpaquePointer

    init(path: String) throws(DLError) {
        self.path = path
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DLError(.io, "\(path): cannot open the file (\(String(cString: strerror(errno))))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw DLError(.io, "\(path): not a regular file") }
        var code: Int32 = 0
        guard let z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &code) else {
            var error = zip_error_t()
            zip_error_init_with_code(&error, code)
            defer { zip_error_fini(&error) }
            let reason = String(cString: zip_error_strerror(&error))
            let kind: DLErrorKind = code == ZIP_ER_OPEN || code == ZIP_ER_READ || code == ZIP_ER_MEMORY ? .io : .format
            throw DLError(kind, "\(path): not a readable zip archive (libzip: \(reason)); a .keras file is a zip of config.json and model.weights.h5")
        }
        archive = z
    }

    deinit { zip_discard(archive) }

    private var z: OpaquePointer { archive }

    /// The entry's index and uncompressed size, or nil when the archive has no such entry.
    func entry(_ name: String) throws(DLError) -> (index: UInt64, size: Int)? {
        let index = zip_name_locate(z, name, 0)
        guard index >= 0 else { return nil }
        var st = zip_stat_t()
        guard zip_stat_index(z, UInt64(index), 0, &st) == 0, st.valid & UInt64(ZIP_STAT_SIZE) != 0 else {
            throw DLError(.format, "\(path): cannot read the directory entry of \(name) (libzip: \(String(cString: zip_strerror(z))))")
        }
        guard st.size <= UInt64(Int.max) else { throw DLError(.format, "\(path): \(name) claims \(st.size) bytes") }
        return (UInt64(index), Int(st.size))
    }

    /// The bytes of entry `name`, refused when it is missing or larger than `limit`.
    func read(_ name: String, limit: Int) throws(DLError) -> [UInt8] {
        guard let (index, size) = try entry(name) else {
            throw DLError(.format, "\(path): the archive has no \(name)")
        }
        guard size <= limit else {
            throw DLError(.format, "\(path): \(name) would expand to \(size) bytes, more than the \(limit) allowed")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBufferPointer { (b) throws(DLError) in
            try copy(index, name, size: size) { chunk, offset in
                guard let to = b.baseAddress, let from = chunk.baseAddress else { return chunk.isEmpty }
                UnsafeMutableRawPointer(to + offset).copyMemory(from: from, byteCount: chunk.count)
                return true
            }
        }
        return bytes
    }

    /// Writes entry `name` (at most `limit` bytes) to the new file `target`.
    func extract(_ name: String, to target: String, limit: Int) throws(DLError) {
        guard let (index, size) = try entry(name) else {
            throw DLError(.format, "\(path): the archive has no \(name)")
        }
        guard size <= limit else {
            throw DLError(.format, "\(path): \(name) would expand to \(size) bytes, more than the \(limit) allowed")
        }
        let fd = open(target, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw DLError(.io, "\(target): cannot create a temporary file (\(String(cString: strerror(errno))))") }
        var writeFailed = false
        do {
            try copy(index, name, size: size) { chunk, _ in
                var done = 0
                while done < chunk.count {
                    let n = write(fd, chunk.baseAddress! + done, chunk.count - done)
                    if n <= 0 { writeFailed = true; return false }
                    done += n
                }
                return true
            }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0, !writeFailed else {
            throw DLError(.io, "\(target): cannot write the temporary file (\(String(cString: strerror(errno))))")
        }
    }

    /// Streams entry `index` through `sink` (chunk, offset), checking that it holds `size` bytes.
    private func copy(_ index: UInt64, _ name: String, size: Int,
                      _ sink: (UnsafeRawBufferPointer, Int) -> Bool) throws(DLError) {
        guard let file = zip_fopen_index(z, index, 0) else {
            throw DLError(.format, "\(path): cannot open \(name) in the archive (libzip: \(String(cString: zip_strerror(z))))")
        }
        defer { zip_fclose(file) }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { zip_fread(file, $0.baseAddress!, UInt64($0.count)) }
            if n < 0 {
                throw DLError(.format, "\(path): \(name) is damaged (libzip: \(String(cString: zip_file_strerror(file))))")
            }
            if n == 0 { break }
            guard Int(n) <= size - offset else {
                throw DLError(.format, "\(path): \(name) holds more than the \(size) bytes its directory entry states")
            }
            let ok = chunk.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)]), offset) }
            guard ok else { throw DLError(.io, "\(path): cannot store \(name)") }
            offset += Int(n)
        }
        guard offset == size else {
            throw DLError(.format, "\(path): \(name) ends after \(offset) of its \(size) bytes; the archive is truncated or damaged")
        }
    }
}

/// Writes a zip archive atomically: entries go to `path`.tmp-PID, renamed over `path` on `finish`.
final class ZipWriter {
    let path: String
    private let temporary: String
    private var archive: OpaquePointer?
    /// Buffers handed to libzip, which reads them only when the archive is closed.
    private var buffers: [UnsafeMutableRawPointer] = []

    init(path: String) throws(DLError) {
        self.path = path
        temporary = path + ".tmp-\(getpid())"
        var code: Int32 = 0
        guard let z = zip_open(temporary, ZIP_CREATE | ZIP_TRUNCATE, &code) else {
            throw DLError(.io, "\(path): cannot create the archive (libzip error \(code))")
        }
        archive = z
    }

    deinit {
        if let archive { zip_discard(archive); unlink(temporary) }
        buffers.forEach { free($0) }
    }

    func add(_ name: String, bytes: [UInt8]) throws(DLError) {
        guard let archive else { throw DLError(.internal, "\(path): the archive is closed") }
        guard let copy = malloc(max(bytes.count, 1)) else { throw DLError(.noMemory, "\(path): out of memory") }
        buffers.append(copy)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { copy.copyMemory(from: b, byteCount: $0.count) } }
        guard let source = zip_source_buffer(archive, copy, UInt64(bytes.count), 0) else {
            throw DLError(.io, "\(path): cannot add \(name) (libzip: \(String(cString: zip_strerror(archive))))")
        }
        guard zip_file_add(archive, name, source, ZIP_FL_OVERWRITE) >= 0 else {
            zip_source_free(source)
            throw DLError(.io, "\(path): cannot add \(name) (libzip: \(String(cString: zip_strerror(archive))))")
        }
    }

    /// Adds the file at `file` (read when the archive is closed, so it must stay until `finish`).
    func add(_ name: String, file: String) throws(DLError) {
        guard let archive else { throw DLError(.internal, "\(path): the archive is closed") }
        guard let source = zip_source_file(archive, file, 0, -1) else {
            throw DLError(.io, "\(path): cannot add \(name) from \(file) (libzip: \(String(cString: zip_strerror(archive))))")
        }
        guard zip_file_add(archive, name, source, ZIP_FL_OVERWRITE) >= 0 else {
            zip_source_free(source)
            throw DLError(.io, "\(path): cannot add \(name) (libzip: \(String(cString: zip_strerror(archive))))")
        }
    }

    func finish() throws(DLError) {
        guard let archive else { throw DLError(.internal, "\(path): the archive is closed") }
        guard zip_close(archive) == 0 else {
            let reason = String(cString: zip_strerror(archive))
            zip_discard(archive)
            self.archive = nil
            unlink(temporary)
            throw DLError(.io, "\(path): cannot write the archive (libzip: \(reason))")
        }
        self.archive = nil
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DLError(.io, "\(path): cannot replace the file: \(reason)")
        }
    }
}

/// A fresh temporary file name (the file is created and left empty; the caller removes it).
func temporaryFile(_ stem: String) throws(DLError) -> String {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(dir.isEmpty ? "/tmp" : dir)/dl-\(stem)-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw DLError(.io, "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))") }
    close(fd)
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
