import DeepLearning
import Glibc

/// One epoch of `dl train`.
struct EpochRecord {
    var epoch: Int
    /// Mean mini-batch loss during the epoch (each batch's loss before its update).
    var trainLoss: Double
    /// On the whole training set after the epoch, in [0, 1]; nil for regression.
    var trainAccuracy: Double?
    /// Nil without a test set.
    var testLoss: Double?
    var testAccuracy: Double?
    /// Training time of the epoch, evaluations excluded.
    var seconds: Double
}

private let historyHeader = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds"

/// The history as CSV: a header, then one row per epoch (accuracies as fractions; a value
/// that does not exist, as a regression model's accuracy, is an empty field).
func historyCSV(_ history: [EpochRecord]) -> String {
    var text = historyHeader + "\n"
    for r in history {
        let fields = [r.trainLoss, r.trainAccuracy, r.testLoss, r.testAccuracy].map { $0.map { fixed($0, 6) } ?? "" }
        text += "\(r.epoch)," + fields.joined(separator: ",") + ",\(fixed(r.seconds, 3))\n"
    }
    return text
}

/// The first `epochs` rows of the history `historyCSV` wrote beside `checkpoint`, to carry
/// on a resumed run's; empty when there is no such file. Throws when it is not a history.
func readHistory(_ checkpoint: String, upTo epochs: Int) throws(DLError) -> [EpochRecord] {
    let path = (replacingSuffix(checkpoint, ".h5", "") ?? checkpoint) + ".history.csv"
    guard access(path, F_OK) == 0 else { return [] }
    guard let file = fopen(path, "r") else {
        throw DLError(.io, "\(path): cannot open the history (\(String(cString: strerror(errno))))")
    }
    defer { fclose(file) }
    var lines: [String] = []
    var line: UnsafeMutablePointer<CChar>? = nil, capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let line { lines.append(String(cString: line)) }
    guard lines.first?.hasPrefix(historyHeader) == true else { throw DLError(.format, "\(path): not a dl train history") }
    var history: [EpochRecord] = []
    for (n, text) in lines.dropFirst().enumerated() {
        let fields = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingSuffix { $0 == "\n" || $0 == "\r" }
        }
        let numbers = fields.map { $0.isEmpty ? nil : Double($0) }
        guard fields.count == 6, let epoch = Int(fields[0]), let loss = numbers[1], let seconds = numbers[5] else {
            throw DLError(.format, "\(path):\(n + 2): not a row of a dl train history")
        }
        if epoch > epochs { break }
        history.append(EpochRecord(epoch: epoch, trainLoss: loss, trainAccuracy: numbers[2], testLoss: numbers[3],
                                   testAccuracy: numbers[4], seconds: seconds))
    }
    return history
}

extension Substring {
    /// This text without the trailing characters that match.
    func trimmingSuffix(_ drop: (Character) -> Bool) -> Substring {
        var end = endIndex
        while end > startIndex, drop(self[index(before: end)]) { end = index(before: end) }
        return self[..<end]
    }
}

/// Writes `text` to `path`, replacing the file.
func writeTextFile(_ path: String, _ text: String) throws(DLError) {
    guard let file = fopen(path, "w") else {
        throw DLError(.io, "\(path): cannot open for writing (\(String(cString: strerror(errno))))")
    }
    let written = text.withCString { fwrite($0, 1, strlen($0), file) }
    let failed = written != text.utf8.count || fflush(file) != 0
    let reason = String(cString: strerror(errno))
    fclose(file)
    if failed { throw DLError(.io, "\(path): cannot write (\(reason))") }
}

/// The learning curve as a stand-alone SVG drawing: loss per epoch on the left, accuracy
/// per epoch on the right, training and test series in each, with axes, ticks and labels.
enum LearningCurve {
    struct Series {
        var name: String
        var color: String
        var dashed: Bool
        var values: [Double]
    }

    static let panelWidth = 430.0, height = 380.0
    /// The plot area inside a panel: left, top, right and bottom margins.
    static let margin = (left: 64.0, top: 70.0, right: 18.0, bottom: 52.0)

    /// The drawing of `history`; the accuracy panel only when it has accuracies (a
    /// classifier's), the test series only when it has a test set. `loss` names the loss.
    static func svg(_ history: [EpochRecord], title: String, loss lossName: String) -> String {
        let blue = "#1f77b4", red = "#d62728"
        let hasTest = history.contains { $0.testLoss != nil }
        func series(_ train: String, _ values: (EpochRecord) -> Double?, _ test: (EpochRecord) -> Double?) -> [Series] {
            [Series(name: train, color: blue, dashed: false, values: history.map { values($0) ?? .nan })]
                + (hasTest ? [Series(name: "test", color: red, dashed: true, values: history.map { test($0) ?? .nan })] : [])
        }
        let loss = series("train (during the epoch)", { $0.trainLoss }, { $0.testLoss })
        let accuracy = series("train", { $0.trainAccuracy.map { 100 * $0 } }, { $0.testAccuracy.map { 100 * $0 } })
        let panels = history.contains { $0.trainAccuracy != nil } ? 2.0 : 1.0
        // A resumed run without its earlier history starts after epoch 1.
        let epochs = (history.first?.epoch ?? 1)...(history.last?.epoch ?? 1)
        let width = panels * panelWidth
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(escape(title))</text>

        """
        s += panel(x: 0, title: "Loss (mean \(lossName))", yLabel: "loss", series: loss, epochs: epochs)
        if panels == 2 {
            s += panel(x: panelWidth, title: "Accuracy", yLabel: "accuracy (%)", series: accuracy, epochs: epochs)
        }
        return s + "</svg>\n"
    }

    private static func panel(x ox: Double, title: String, yLabel: String, series: [Series],
                              epochs: ClosedRange<Int>) -> String {
        let left = ox + margin.left, right = ox + panelWidth - margin.right
        let top = margin.top, bottom = height - margin.bottom
        // x: the epochs, with a little room on both sides so no point sits on an axis.
        let room = max(0.25, Double(epochs.count) / 40)
        let (x0, x1) = (Double(epochs.lowerBound) - room, Double(epochs.upperBound) + room)
        let px = { (e: Double) in left + (e - x0) / (x1 - x0) * (right - left) }
        // y: nice ticks around every value.
        let values = series.flatMap(\.values).filter(\.isFinite)
        let (y0, y1, step) = axisRange(values.min() ?? 0, values.max() ?? 1)
        let py = { (v: Double) in bottom - (v - y0) / (y1 - y0) * (bottom - top) }
        let digits = Int32(max(0, -Int((log10(step)).rounded(.down))))

        var s = "<g>\n"
        s += "<text x=\"\(n(left))\" y=\"\(n(top - 30))\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>\n"
        // Grid and y ticks.
        var t = y0
        while t <= y1 + step / 2 {
            let y = py(t)
            s += "<line x1=\"\(n(left))\" y1=\"\(n(y))\" x2=\"\(n(right))\" y2=\"\(n(y))\" stroke=\"#e4e4e4\"/>\n"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(y + 4))\" text-anchor=\"end\">\(fixed(t, digits))</text>\n"
            t += step
        }
        // x ticks: every epoch, or about eight of them.
        let every = max(1, Int(niceStep(Double(epochs.count) / 8).rounded(.up)))
        for e in stride(from: epochs.lowerBound, through: epochs.upperBound, by: every) {
            let x = px(Double(e))
            s += "<line x1=\"\(n(x))\" y1=\"\(n(bottom))\" x2=\"\(n(x))\" y2=\"\(n(bottom + 5))\" stroke=\"black\"/>\n"
            s += "<text x=\"\(n(x))\" y=\"\(n(bottom + 18))\" text-anchor=\"middle\">\(e)</text>\n"
        }
        // Axes and their labels.
        s += "<polyline points=\"\(n(left)),\(n(top)) \(n(left)),\(n(bottom)) \(n(right)),\(n(bottom))\" fill=\"none\" stroke=\"black\"/>\n"
        s += "<text x=\"\(n((left + right) / 2))\" y=\"\(n(bottom + 38))\" text-anchor=\"middle\">epoch</text>\n"
        let cy = (top + bottom) / 2, labelX = ox + 16
        s += "<text x=\"\(n(labelX))\" y=\"\(n(cy))\" text-anchor=\"middle\" transform=\"rotate(-90 \(n(labelX)) \(n(cy)))\">\(escape(yLabel))</text>\n"
        // Legend, above the plot, ending at its right edge (text width estimated at 7 px a character).
        var lx = right - series.reduce(0) { $0 + legendWidth($1) } + 16
        for line in series {
            let ly = top - 12
            defer { lx += legendWidth(line) }
            s += "<line x1=\"\(n(lx))\" y1=\"\(n(ly))\" x2=\"\(n(lx + 24))\" y2=\"\(n(ly))\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash(line))/>\n"
            s += "<text x=\"\(n(lx + 30))\" y=\"\(n(ly + 4))\">\(escape(line.name))</text>\n"
        }
        // The series.
        for line in series {
            let points = line.values.enumerated().filter { $0.element.isFinite }
                .map { "\(n(px(Double(epochs.lowerBound + $0.offset)))),\(n(py($0.element)))" }
            s += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash(line))/>\n"
            for p in points {
                let xy = p.split(separator: ",")
                s += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(line.color)\"/>\n"
            }
        }
        return s + "</g>\n"
    }

    /// Axis bounds on multiples of a nice tick step (1, 2 or 5 times a power of ten), about
    /// five ticks for the range of the values.
    static func axisRange(_ low: Double, _ high: Double) -> (Double, Double, Double) {
        var (lo, hi) = (low, high)
        if hi - lo < 1e-9 * max(1, abs(hi)) {
            let spread = max(abs(hi) * 0.05, 1e-3)
            lo -= spread
            hi += spread
        }
        let step = niceStep((hi - lo) / 5)
        return ((lo / step).rounded(.down) * step, (hi / step).rounded(.up) * step, step)
    }

    static func niceStep(_ rough: Double) -> Double {
        let power = pow(10, (log10(rough)).rounded(.down))
        let f = rough / power
        return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * power
    }

    private static func legendWidth(_ s: Series) -> Double { 30 + 7 * Double(s.name.count) + 16 }

    private static func dash(_ s: Series) -> String { s.dashed ? " stroke-dasharray=\"6 3\"" : "" }

    private static func n(_ v: Double) -> String { fixed(v, 1) }

    private static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
