import Glibc

extension Dataset {
    /// Loads a CSV file of numbers, one sample per row: the class label first, then the
    /// features (MNIST as CSV: a label and 784 pixels); or, with `targetCount`, that many
    /// target values first (regression), then the features. The file may be gzipped.
    ///
    /// - A first row whose first field is not a number is a header and is skipped (its
    ///   column count must still match the data).
    /// - Every row must have the same number of columns: `featureCount + 1` (or
    ///   `featureCount + targetCount`) when given, or else `featureCount` exactly, and then
    ///   the file has no target columns and loads as a set without targets (the first row,
    ///   header or data, decides which). Without `featureCount` the first column (or the
    ///   first `targetCount`) always holds the targets.
    /// - Labels must be non-negative integers; target values and features finite numbers.
    ///   Blank lines, spaces around fields and CRLF line ends are accepted.
    ///
    /// Errors are `.format` and point at the spot as `path:line:column:` (1-based, column
    /// in bytes). `sampleShape` is `[featureCount]`.
    public static func loadCSV(_ path: String, featureCount: Int? = nil, targetCount: Int? = nil) throws(DLError) -> Dataset {
        if let n = featureCount, n < 1 { throw .invalid("\(path): featureCount must be at least 1, got \(n)") }
        if let n = targetCount, n < 1 { throw .invalid("\(path): targetCount must be at least 1, got \(n)") }
        // strtof and strtod stop at the terminating NUL, never past the buffer.
        let text = try DataFile(path).readBytes(terminated: true)
        // A row of n columns takes at least 2n - 1 bytes, so a count beyond the file's size
        // matches no row. Refusing it here also keeps the column arithmetic below from
        // overflowing (featureCount + targetCount, rows * columns) whatever the caller passes.
        for (name, count) in [("featureCount", featureCount), ("targetCount", targetCount)] {
            if let n = count, n >= text.count {
                throw DLError(.format, "\(path): \(name) is \(n), more columns than the file's \(text.count - 1) bytes can hold in a row")
            }
        }
        return try text.withUnsafeBufferPointer { (b) throws(DLError) in
            var parser = CSVParser(path: path, text: b.baseAddress!, end: b.count - 1, targetCount: targetCount)
            return try parser.parse(featureCount: featureCount)
        }
    }
}

/// A single pass over the whole file in memory: fields are converted in place with strtof
/// (plain integers, most of MNIST, take a shortcut that gives the same values), straight
/// into the feature buffer. Nothing is split into strings.
private struct CSVParser {
    let path: String
    let text: UnsafePointer<UInt8>
    /// Index of the terminating NUL; `text[end] == 0`.
    let end: Int
    var pos = 0
    var line = 1
    var lineStart = 0
    /// Target values per row, or nil for a class label.
    let targetCount: Int?
    /// Whether the rows start with their targets; decided by the first row (see `loadCSV`).
    var labelled = true
    /// Whether the caller gave featureCount, so that the first row may also be unlabelled.
    var featureCountGiven = false
    /// Whether the first row was a header (then it, not the first data row, set the layout).
    var hasHeader = false

    init(path: String, text: UnsafePointer<UInt8>, end: Int, targetCount: Int?) {
        self.path = path
        self.targetCount = targetCount
        self.text = text
        self.end = end
    }

    mutating func parse(featureCount: Int?) throws(DLError) -> Dataset {
        if end >= 3, text[0] == 0xEF, text[1] == 0xBB, text[2] == 0xBF { pos = 3; lineStart = 3 }  // UTF-8 BOM
        skipBlankLines()
        guard pos < end else { throw DLError(.format, "\(path): empty file, no header and no data rows") }
        // With featureCount given, a first row of exactly featureCount columns means no labels.
        labelled = featureCount.map { fieldsOnLine() != $0 } ?? true
        featureCountGiven = featureCount != nil
        var columns = featureCount.map { $0 + leading }
        if !startsWithNumber() {
            var p = pos
            while p < end && text[p] != UInt8(ascii: "\n") {
                // A control byte in what would be the header: binary data, say so.
                if text[p] < 0x20 && text[p] != UInt8(ascii: "\t") && text[p] != UInt8(ascii: "\r") {
                    throw failure(at: p, "binary data (byte 0x\(String(text[p], radix: 16))), not CSV text")
                }
                p += 1
            }
            let headerColumns = fieldsOnLine()
            if let c = columns, c != headerColumns {
                throw failure(at: pos, "the header has \(headerColumns) columns, expected \(layout(c, firstRow: true))")
            }
            columns = headerColumns
            hasHeader = true
            nextLine()
            skipBlankLines()
            guard pos < end else { throw DLError(.format, "\(path): a header but no data rows") }
        }
        let width = columns ?? fieldsOnLine()
        guard width > leading else {
            throw failure(at: pos, "a row needs \(targetWords) and at least one feature, this one has \(width) column\(width == 1 ? "" : "s")")
        }
        let featureSize = width - leading
        // Every field takes at least one byte and a comma or line end, so the rows left are
        // at most (bytes + 1) / (2 * width); one more for a last row that turns out short,
        // whose first fields are stored before its end is found. Bounding by the bytes, not
        // only by the lines, keeps the buffers below about three floats per byte of the file
        // whatever the column count.
        let maxRows = min(linesFromHere(), (end - pos + 1) / (2 * width) + 1)
        let capacity = try checkedProduct(maxRows, featureSize, "\(path): \(maxRows) rows of \(featureSize) features")
        let values = targetCount ?? 0
        let valueCapacity = try checkedProduct(labelled ? maxRows : 0, values, "\(path): \(maxRows) rows of \(values) targets")

        var labels = [Int32](repeating: 0, count: labelled && targetCount == nil ? maxRows : 0)
        var targets = [Float](repeating: 0, count: valueCapacity)
        var rows = 0
        let features = try [Float](unsafeUninitializedCapacity: capacity) { (out, initialized) throws(DLError) in
            try labels.withUnsafeMutableBufferPointer { (labelOut) throws(DLError) in
                try targets.withUnsafeMutableBufferPointer { (targetOut) throws(DLError) in
                    while pos < end {
                        if skipBlankLine() { continue }
                        // Fields after the first of a row are preceded by a comma.
                        if labelled && values == 0 { labelOut[rows] = try label() }
                        for t in 0..<(labelled ? values : 0) {
                            if t > 0 { try comma(width, rows) }
                            targetOut[rows * values + t] = try feature()
                        }
                        let row = out.baseAddress! + rows * featureSize
                        for f in 0..<featureSize {
                            if labelled || f > 0 { try comma(width, rows) }
                            row[f] = try feature()
                        }
                        guard endOfLine() else { throw columnCountError(expected: width, row: rows) }
                        nextLine()
                        rows += 1
                    }
                }
            }
            initialized = rows * featureSize
        }
        let found: Dataset.Targets
        if !labelled {
            found = .none
        } else if values > 0 {
            targets.removeLast(targets.count - rows * values)
            found = .values(targets, size: values)
        } else {
            labels.removeLast(labels.count - rows)
            found = .labels(labels)
        }
        return try Dataset(features: features, targets: found, sampleShape: [featureSize])
    }

    /// The columns before the features: the targets' when the rows have them, else none.
    private var leading: Int { labelled ? targetCount ?? 1 : 0 }

    /// What a row starts with, for messages.
    private var targetWords: String {
        guard let n = targetCount else { return "a label" }
        return n == 1 ? "a target" : "\(n) targets"
    }

    /// Steps over the comma before a field; throws the wrong-width error without one.
    private mutating func comma(_ width: Int, _ row: Int) throws(DLError) {
        guard text[pos] == UInt8(ascii: ",") else { throw columnCountError(expected: width, row: row) }
        pos += 1
    }

    // MARK: Fields

    /// The label field: a non-negative integer that fits in Int32.
    private mutating func label() throws(DLError) -> Int32 {
        let start = fieldStart()
        if let n = plainInteger(maxDigits: 9) { return Int32(n) }
        guard !isFieldEnd(at: start) else { throw failure(at: start, "empty label field") }
        var stop: UnsafeMutablePointer<CChar>? = nil
        let value = strtod(cString(start), &stop)
        try finishField(start, stop)
        guard value >= 0, value <= Double(Int32.max), value.rounded() == value else {
            throw failure(at: start, "label \"\(token(start))\" is not a non-negative integer")
        }
        return Int32(value)
    }

    /// A feature field: a finite number.
    @inline(__always)
    private mutating func feature() throws(DLError) -> Float {
        let start = fieldStart()
        // Integers of up to 7 digits are exact in Float, so this equals strtof's result.
        if let n = plainInteger(maxDigits: 7) { return Float(n) }
        // strtof skips leading whitespace, newlines included: an empty field must not reach it.
        guard !isFieldEnd(at: start) else { throw failure(at: start, "empty field") }
        var stop: UnsafeMutablePointer<CChar>? = nil
        let value = strtof(cString(start), &stop)
        try finishField(start, stop)
        guard value.isFinite else { throw failure(at: start, "\"\(token(start))\" is not a finite number") }
        return value
    }

    /// Skips spaces before a field; returns where the field starts.
    private mutating func fieldStart() -> Int {
        pos = skipSpaces(pos)
        return pos
    }

    /// The first position from `p` that is not a space or tab (nor a CR, when `orCR`).
    @inline(__always)
    private func skipSpaces(_ p: Int, orCR: Bool = false) -> Int {
        var p = p
        while text[p] == UInt8(ascii: " ") || text[p] == UInt8(ascii: "\t") || (orCR && text[p] == UInt8(ascii: "\r")) { p += 1 }
        return p
    }

    /// An unsigned decimal integer of at most `maxDigits` digits that fills the whole
    /// field, consumed; nil (and nothing consumed) for anything else.
    @inline(__always)
    private mutating func plainInteger(maxDigits: Int) -> Int? {
        var p = pos
        var n = 0
        while p - pos < maxDigits, text[p] &- UInt8(ascii: "0") < 10 {
            n = n * 10 + Int(text[p] &- UInt8(ascii: "0"))
            p += 1
        }
        guard p > pos, isFieldEnd(at: p) else { return nil }
        pos = p
        return n
    }

    /// After strtof/strtod stopped at `stop`: something must have been read, and only spaces
    /// may follow before the next comma or the end of the line.
    private mutating func finishField(_ start: Int, _ stop: UnsafeMutablePointer<CChar>?) throws(DLError) {
        let consumed = stop.map { UnsafeRawPointer($0) - UnsafeRawPointer(text + start) } ?? 0
        guard consumed > 0 else { throw failure(at: start, "\"\(token(start))\" is not a number") }
        pos = skipSpaces(start + consumed, orCR: true)
        guard isFieldEnd(at: pos) else { throw failure(at: start, "\"\(token(start))\" is not a number") }
    }

    /// Whether a field ends at `p`: a comma, a line end, or the end of the text (a NUL
    /// byte inside the file is not a field end, so it is reported as a bad number).
    @inline(__always)
    private func isFieldEnd(at p: Int) -> Bool {
        let c = text[p]
        return c == UInt8(ascii: ",") || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") || p == end
    }

    // MARK: Lines

    /// Whether only spaces and a CR remain on the line; moves to the line end if so.
    private mutating func endOfLine() -> Bool {
        let p = skipSpaces(pos, orCR: true)
        guard p == end || text[p] == UInt8(ascii: "\n") else { return false }
        pos = p
        return true
    }

    /// Steps over the newline at `pos` (if any) to the start of the next line.
    private mutating func nextLine() {
        if let newline = memchr(text + pos, Int32(UInt8(ascii: "\n")), end - pos) {
            pos = UnsafeRawPointer(newline) - UnsafeRawPointer(text) + 1
            line += 1
            lineStart = pos
        } else {
            pos = end
        }
    }

    /// Skips one line holding nothing but whitespace; whether it did.
    private mutating func skipBlankLine() -> Bool {
        let start = pos
        guard endOfLine() else { return false }
        if pos == start && pos == end { return false }
        nextLine()
        return true
    }

    private mutating func skipBlankLines() {
        while pos < end && skipBlankLine() {}
    }

    /// Whether the line at `pos` starts with a number followed by a comma or the line end
    /// (a data row), rather than a header.
    private func startsWithNumber() -> Bool {
        let p = skipSpaces(pos)
        guard !isFieldEnd(at: p) else { return false }
        var stop: UnsafeMutablePointer<CChar>? = nil
        _ = strtod(cString(p), &stop)
        guard let stop, UnsafeRawPointer(stop) > UnsafeRawPointer(text + p) else { return false }
        let q = skipSpaces(UnsafeRawPointer(stop) - UnsafeRawPointer(text), orCR: true)
        return q == end || text[q] == UInt8(ascii: ",") || text[q] == UInt8(ascii: "\n")
    }

    /// Number of comma-separated fields on the line at `pos`.
    private func fieldsOnLine() -> Int {
        var fields = 1
        var p = pos
        while p < end && text[p] != UInt8(ascii: "\n") {
            if text[p] == UInt8(ascii: ",") { fields += 1 }
            p += 1
        }
        return fields
    }

    /// Upper bound on the rows left: the number of lines from `pos` to the end.
    private func linesFromHere() -> Int {
        var lines = 1
        var p = text + pos
        let stop = text + end
        while p < stop, let newline = memchr(p, Int32(UInt8(ascii: "\n")), stop - p) {
            lines += 1
            p = UnsafePointer(newline.assumingMemoryBound(to: UInt8.self)) + 1
        }
        return lines
    }

    // MARK: Messages

    private func failure(at position: Int, _ message: String) -> DLError {
        DLError(.format, "\(path):\(line):\(position - lineStart + 1): \(message)")
    }

    /// What `columns` columns hold, for messages: "3 (a label and 2 features)". On the first
    /// row, when featureCount was given, the unlabelled alternative is named too.
    private func layout(_ columns: Int, firstRow: Bool) -> String {
        let features = columns - leading
        let plural = features == 1 ? "" : "s"
        let main = labelled ? "\(columns) (\(targetWords) and \(features) feature\(plural))"
                            : "\(columns) (\(features) feature\(plural), no \(targetCount == nil ? "label column" : "target columns"))"
        guard firstRow && featureCountGiven && labelled else { return main }
        return "\(main), or \(features) (the feature\(plural) alone, unlabelled)"
    }

    /// The wrong-width error for the current line (`row`, 0-based among the data rows),
    /// pointing at where it went wrong.
    private func columnCountError(expected: Int, row: Int) -> DLError {
        var lineEnd = lineStart
        while lineEnd < end && text[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
        var found = 1
        for p in lineStart..<lineEnd where text[p] == UInt8(ascii: ",") { found += 1 }
        // A stray character after a number leaves the column count right: say what it is.
        if found == expected {
            let p = skipSpaces(pos, orCR: true)
            return failure(at: p, "unexpected \"\(token(p))\" after a number, expected a comma or the end of the line")
        }
        return failure(at: pos, "\(found) columns, expected \(layout(expected, firstRow: row == 0 && !hasHeader))")
    }

    /// The field text starting at `start`, up to the next comma or line end (at most 40
    /// bytes), control characters shown as `\xNN`.
    private func token(_ start: Int) -> String {
        var p = start
        while p < end && p - start < 40 && text[p] != UInt8(ascii: ",") && text[p] != UInt8(ascii: "\n")
                && text[p] != UInt8(ascii: "\r") { p += 1 }
        var shown: [UInt8] = []
        for c in UnsafeBufferPointer(start: text + start, count: p - start) {
            if c < 0x20 || c == 0x7F {
                shown += Array("\\x\(c < 16 ? "0" : "")\(String(c, radix: 16))".utf8)
            } else {
                shown.append(c)
            }
        }
        return String(decoding: shown, as: UTF8.self)
    }

    private func cString(_ position: Int) -> UnsafePointer<CChar> {
        UnsafeRawPointer(text + position).assumingMemoryBound(to: CChar.self)
    }
}
