import Glibc

/// Where every tensor's and buffer's elements start: a cache line's boundary.
///
/// malloc returns 16-byte boundaries (and, for the large blocks it maps, 16 bytes past a
/// page), so a row of 16 floats straddled two cache lines and every other 8-float vector
/// load was split across them: with W^T 16 bytes off a line, the first layer's product
/// (64 x 392 x 128) took 87 us against 73 on a line (bench/README.md, "Aligned to cache
/// lines").
let dataAlignment = 64

/// `bytes` (at least 1) from the heap at a `dataAlignment` boundary, or nil when the memory
/// cannot be had. Release with `free`.
func alignedAllocation(_ bytes: Int) -> UnsafeMutableRawPointer? {
    var raw: UnsafeMutableRawPointer? = nil
    guard posix_memalign(&raw, dataAlignment, max(bytes, 1)) == 0 else { return nil }
    return raw
}

/// A growable, cache-line-aligned buffer that never shrinks: reserved once, reused every step.
/// Its properties change only in `reserve`, so they carry no run-time exclusivity checks
/// (as `Tensor`'s).
final class Buffer<Element> {
    @exclusivity(unchecked) private(set) var base: UnsafeMutablePointer<Element>
    @exclusivity(unchecked) private(set) var capacity = 0

    init() { base = UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment)! }

    deinit { if capacity > 0 { free(base) } }

    /// Makes room for `count` elements (contents are lost when it grows). False when out of memory.
    func reserve(_ count: Int) -> Bool {
        if count <= capacity { return true }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow, let raw = alignedAllocation(bytes) else { return false }
        if capacity > 0 { free(base) }
        base = raw.bindMemory(to: Element.self, capacity: count)
        capacity = count
        return true
    }
}
