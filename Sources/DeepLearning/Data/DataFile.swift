import CZlib
import Glibc

/// A data file opened for reading through zlib: gzip files are decompressed as they are
/// read, other files are read as they are.
///
/// A name ending in `.gz` must hold gzip data; any other file is sniffed, so a gzipped
/// file under a plain name still loads. Damaged or truncated gzip data is an error, never
/// a short read that passes for the end of the file.
final class DataFile {
    let path: String
    private let file: gzFile
    /// The size of an uncompressed file; nil for gzip, whose size is known only once read.
    private let sizeHint: Int?
    /// The size on disk of a gzip file (nil for others).
    let compressedSize: Int?

    /// Deflate's largest expansion: about 1032 bytes out per byte in (a run of one byte
    /// value). A gzip file of `n` bytes holds at most `n * maxGzipRatio` bytes of data.
    static let maxGzipRatio = 1032

    /// The most bytes this file can hold once decompressed: its size, or for gzip its size
    /// times deflate's largest expansion. A header claiming more is refused unread.
    var maxDataSize: Int {
        if let compressedSize {
            let (n, overflow) = compressedSize.multipliedReportingOverflow(by: DataFile.maxGzipRatio)
            return overflow ? Int.max : n
        }
        return sizeHint ?? Int.max
    }

    /// Opens `path`. Throws `.io` when it cannot be opened, `.format` when a `.gz` file is not gzip.
    init(_ path: String) throws(DLError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DLError(.io, "\(path): cannot open the file (\(String(cString: strerror(errno))))") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DLError(.io, "\(path): cannot read the file's status (\(reason))")
        }
        guard (info.st_mode & S_IFMT) != S_IFDIR else {
            close(fd)
            throw DLError(.io, "\(path): is a directory, not a data file")
        }
        var signature: (UInt8, UInt8) = (0, 0)
        let isGzip = withUnsafeMutableBytes(of: &signature) { pread(fd, $0.baseAddress, 2, 0) } == 2
            && signature == (0x1f, 0x8b)
        if path.hasSuffix(".gz") && !isGzip {
            close(fd)
            throw DLError(.format, "\(path): not a gzip file (the name ends in .gz but the data does not start with the gzip signature 1f 8b)")
        }
        guard let file = gzdopen(fd, "rb") else {
            close(fd)
            throw DLError(.noMemory, "\(path): cannot allocate zlib's reading state")
        }
        gzbuffer(file, 1 << 18)  // zlib's default 8 KiB input buffer makes large files slow
        self.path = path
        self.file = file
        self.sizeHint = isGzip ? nil : Int(info.st_size)
        self.compressedSize = isGzip ? Int(info.st_size) : nil
    }

    deinit { gzclose(file) }

    /// Reads up to `count` bytes into `buffer`; fewer only at the end of the data.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(DLError) -> Int {
        var done = 0
        while done < count {
            let want = UInt32(min(count - done, 1 << 30))
            let n = Int(gzread(file, buffer + done, want))
            if n > 0 { done += n }
            if n < Int(want) {
                try checkStream()
                if n <= 0 { break }
            }
        }
        return done
    }

    /// Reads up to `count` bytes (all of the file by default), followed by a NUL byte when
    /// `terminated` (for C parsers; not counted in `count`). The buffer grows as data
    /// arrives, so a damaged size field never allocates more than the file holds.
    func readBytes(upTo count: Int = Int.max, terminated: Bool = false) throws(DLError) -> [UInt8] {
        var capacity = min(count, sizeHint.map { $0 + 1 } ?? 1 << 16)
        guard var buffer = malloc(max(capacity, 1)) else { throw outOfMemory(capacity) }
        defer { free(buffer) }
        var used = 0
        while used < count {
            if used == capacity {
                capacity = min(count, capacity * 2)
                guard let grown = realloc(buffer, capacity) else { throw outOfMemory(capacity) }
                buffer = grown
            }
            let got = try read(into: buffer + used, count: capacity - used)
            used += got
            if got == 0 { break }
        }
        let total = used + (terminated ? 1 : 0)
        // A Swift array that cannot be allocated ends the process: try malloc first.
        guard let probe = malloc(max(total, 1)) else { throw outOfMemory(total) }
        free(probe)
        return [UInt8](unsafeUninitializedCapacity: total) { bytes, initialized in
            if used > 0 { memcpy(bytes.baseAddress!, buffer, used) }
            if terminated { bytes[used] = 0 }
            initialized = total
        }
    }

    /// Whether the data ends here; reads (and discards) at most one byte.
    func atEnd() throws(DLError) -> Bool {
        var byte: UInt8 = 0
        return try read(into: &byte, count: 1) == 0
    }

    private func outOfMemory(_ bytes: Int) -> DLError {
        DLError(.noMemory, "\(path): out of memory reading \(bytes) bytes")
    }

    /// Throws when zlib has met damaged or truncated gzip data.
    private func checkStream() throws(DLError) {
        var code: Int32 = Z_OK
        let message = gzerror(file, &code)
        guard code != Z_OK else { return }
        var detail = message.map { String(cString: $0) } ?? "zlib error \(code)"
        if detail.hasPrefix("<fd:"), let colon = detail.firstIndex(of: " ") {  // "<fd:3>: message"
            detail = String(detail[detail.index(after: colon)...])
        }
        if code == Z_ERRNO {
            throw DLError(.io, "\(path): read failed (\(String(cString: strerror(errno))))")
        }
        let what = code == Z_BUF_ERROR ? "truncated gzip data" : "damaged gzip data"
        throw DLError(.format, "\(path): \(what) (zlib: \(detail))")
    }
}
