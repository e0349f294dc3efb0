import ArgumentParser
import DeepLearning
import Glibc

/// The `dl` command: train, inspect and check models described by JSON specs.
@main
struct DL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dl",
        abstract: "Train, evaluate and inspect deeplearning models.",
        version: Version.string.description,
        subcommands: [Train.self, Eval.self, Predict.self, Info.self, Gradcheck.self, XOR.self, Spec.self,
                      Convert.self])
}

/// Runs `body`, printing a DLError as "dl: error: ..." and exiting with status 1.
func runReporting(_ body: () throws(DLError) -> Void) throws {
    do {
        try body()
    } catch {
        printError("dl: error: \(error.message)")
        throw ExitCode(1)
    }
}

/// Fixed-width text for tables.
func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}

/// A number in scientific notation with `digits` significant decimals ("1.37e-08").
func scientific(_ x: Double, _ digits: Int32 = 2) -> String {
    var buffer = [CChar](repeating: 0, count: 32)
    _ = withVaList([x]) { vsnprintf(&buffer, 32, "%.\(digits)e", $0) }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A number with `digits` decimals ("95.31").
func fixed(_ x: Double, _ digits: Int32 = 4) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([x]) { vsnprintf(&buffer, 64, "%.\(digits)f", $0) }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Writes a line to standard error (file descriptor 2; Glibc's `stderr` global is not
/// concurrency-safe in Swift 6).
func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
