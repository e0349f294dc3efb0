import Glibc
import Testing
@testable import DeepLearning

// CSV sizes a caller or a file decides: counts of any size are refused with a message,
// never an overflow trap, and the buffers are bounded by the file's size, not by a
// count. (fuzz/regressions/csv holds the fuzzer's inputs for the same cases.)

private func writeCSV(_ text: String) -> String {
    let dir = temporaryDirectory()
    let path = dir + "/data.csv"
    let f = fopen(path, "wb")!
    fputs(text, f)
    fclose(f)
    return path
}

private func remove(_ path: String) {
    unlink(path)
    var dir = path
    dir.removeLast("/data.csv".count)
    rmdir(dir)
}

@Test func csvHostileFeatureCountsAreRefused() throws {
    let path = writeCSV("0,1,2\n1,3,4\n")
    defer { remove(path) }
    // Int.max - 1 + a label column is Int.max: one more would overflow. Every count larger
    // than the file could hold in a row is a format error that names it.
    for n in [Int.max, Int.max - 1, Int.max / 2, 1 << 40, 13] {
        #expect(throws: DLError.self) { try Dataset.loadCSV(path, featureCount: n) }
        do {
            _ = try Dataset.loadCSV(path, featureCount: n)
        } catch {
            #expect(error.kind == .format)
            #expect(error.message.contains("featureCount is \(n)"))
        }
        #expect(throws: DLError.self) { try Dataset.loadCSV(path, featureCount: 2, targetCount: n) }
        #expect(throws: DLError.self) { try Dataset.loadCSV(path, featureCount: n, targetCount: n) }
    }
    // The largest counts the file can match still load as before.
    #expect(try Dataset.loadCSV(path, featureCount: 2).count == 2)
    #expect(try Dataset.loadCSV(path, featureCount: 3).isLabelled == false)
}

@Test func csvBuffersAreBoundedByTheFile() throws {
    // Many short lines with a wide first row: the rows that fit in the bytes are few, and
    // the short rows are refused at their own line (not written past the buffers).
    var text = (0..<200).map(String.init).joined(separator: ",") + "\n"
    text += String(repeating: "1\n", count: 5000)
    let path = writeCSV(text)
    defer { remove(path) }
    do {
        _ = try Dataset.loadCSV(path)
        Issue.record("a short row was accepted")
    } catch {
        #expect(error.kind == .format)
        #expect(error.message.contains(":2:"))
    }
    // A last row cut short, after rows that fill the bound exactly.
    let cut = writeCSV("1,2\n3,4\n5")
    defer { remove(cut) }
    #expect(throws: DLError.self) { try Dataset.loadCSV(cut) }
    let whole = writeCSV("1,2\n3,4\n5,6")
    defer { remove(whole) }
    let data = try Dataset.loadCSV(whole)
    #expect(data.labels == [1, 3, 5])
    #expect(data.features == [2, 4, 6])
}
