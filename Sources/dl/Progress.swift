import DeepLearning
import Glibc

/// Seconds on the monotonic clock (for durations only).
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// CPU seconds used by the process so far, every thread counted.
func processCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// "12.3s", "4m05s" or "2h07m".
func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    if seconds < 60 { return fixed(seconds, 1) + "s" }
    let whole = Int(seconds)
    let (minutes, secs) = whole.quotientAndRemainder(dividingBy: 60)
    if minutes < 60 { return "\(minutes)m\(secs < 10 ? "0" : "")\(secs)s" }
    let (hours, mins) = minutes.quotientAndRemainder(dividingBy: 60)
    return "\(hours)h\(mins < 10 ? "0" : "")\(mins)m"
}

/// Writes text to standard error as it is (no newline added).
func writeError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// The progress of one epoch on standard error.
///
/// On a terminal, one line redrawn in place with a carriage return, at most ten times a
/// second: `epoch 1/5  412/938 [==========>...........] loss 0.4123  41250 samples/s  ETA 1.3s`.
/// When standard error is not a terminal (a CI log, a file), nothing is drawn while the
/// epoch runs and `finish` writes one plain line, so logs stay readable.
final class ProgressBar {
    let label: String
    let total: Int
    let interactive: Bool
    private let start = monotonicSeconds()
    private var lastDraw = -Double.infinity
    private var length = 0
    private var latest: EpochProgress?

    init(label: String, total: Int, interactive: Bool = isatty(2) != 0) {
        self.label = label
        self.total = total
        self.interactive = interactive
    }

    func update(_ progress: EpochProgress) {
        latest = progress
        guard interactive else { return }
        let now = monotonicSeconds()
        guard now - lastDraw >= 0.1 else { return }
        lastDraw = now
        let elapsed = now - start
        let left = elapsed / Double(progress.batchesDone) * Double(total - progress.batchesDone)
        draw(line(progress, elapsed: elapsed, tail: "ETA " + duration(left)))
    }

    /// The final state with the elapsed time, and the end of the line.
    func finish() {
        guard let progress = latest else { return }
        let elapsed = monotonicSeconds() - start
        let text = line(progress, elapsed: elapsed, tail: duration(elapsed))
        if interactive {
            draw(text)
            writeError("\n")
        } else {
            printError(text)
        }
    }

    private func line(_ p: EpochProgress, elapsed: Double, tail: String) -> String {
        let digits = String(total).count
        var text = "\(label) \(pad(String(p.batchesDone), digits, right: true))/\(total)"
        if interactive {
            let width = 24
            let filled = width * p.batchesDone / max(total, 1)
            text += " [" + String(repeating: "=", count: filled)
                + (filled < width ? ">" + String(repeating: ".", count: width - filled - 1) : "") + "]"
        } else {
            text += " batches"
        }
        let rate = elapsed > 0 ? Double(p.samplesDone) / elapsed : 0
        return text + "  loss \(fixed(p.meanLoss))  \(Int(rate)) samples/s  \(tail)"
    }

    private func draw(_ text: String) {
        writeError("\r" + pad(text, length))
        length = text.count
    }
}
