import Glibc

/// A growable malloc'd buffer that never shrinks: reserved once, reused every step.
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
        guard !overflow, let raw = malloc(bytes) else { return false }
        if capacity > 0 { free(base) }
        base = raw.bindMemory(to: Element.self, capacity: count)
        capacity = count
        return true
    }
}
