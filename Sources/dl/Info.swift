import ArgumentParser
import DeepLearning

/// `dl info CKPT`: what a checkpoint holds; for a Keras file, what it would import as.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's architecture, optimizer and training state, or what a Keras model (.keras, Keras .h5) would import as.")

    @Argument(help: "An HDF5 checkpoint written by dl or the library, or a Keras .keras / .h5 model.") var checkpoint: String

    func run() throws {
        try runReporting { () throws(DLError) in
            // A name that says no format may still be a checkpoint; a file that cannot be
            // read fails here, once (a second read would wait out the reader's deadline again).
            var format: ModelFormat? = nil
            do throws(DLError) { format = try ModelFormat.resolve(nil, path: checkpoint, reading: true) } catch {
                guard error.kind == .invalidArgument else { throw error }
            }
            if format == .keras || format == .kerasH5 {
                try keras(format!)
                return
            }
            let model = try loadModel(from: checkpoint)
            let spec = model.spec
            print("checkpoint    \(checkpoint)")
            if !spec.name.isEmpty { print("model         \(spec.name)") }
            print("dtype         \(spec.dtype.rawValue)")
            print("input         \(model.inputShape)  output \(model.outputShape)")
            print("layers")
            let names = model.parameterNames, shapes = model.parameterShapes
            for (i, type) in model.layerTypes.enumerated() {
                let mine = zip(names, shapes).filter { $0.0.hasPrefix("layers.\(i).") }
                let detail = mine.map { "\($0.0.split(separator: ".").last ?? "") \($0.1)" }.joined(separator: ", ")
                print("  \(pad(String(i), 3, right: true))  \(pad(type, 12))  \(detail)")
            }
            print("parameters    \(model.parameterCount)")
            print("preprocessing \(describe(spec.preprocessing))")
            print("loss          \(spec.loss.type)")
            print("optimizer     \(spec.optimizer.type), learning rate \(model.learningRate), \(model.stepCount) steps")
            print("training      \(model.samplesSeen) samples seen, epoch \(model.epoch)")
        }
    }

    /// The Keras layers, what each becomes, the spec, and the notes on what changes.
    private func keras(_ format: ModelFormat) throws(DLError) {
        let t = try KerasImport.describe(path: checkpoint, format: format)
        let spec = try SpecParser.parse(json: t.spec, source: checkpoint)
        print("keras model   \(checkpoint) (\(format == .keras ? "Keras 3 archive" : "legacy Keras HDF5"))")
        print("imports as    \(spec.name), input \(spec.inputShape)")
        print("layers")
        for line in t.layerMap { print("  \(line)") }
        print("preprocessing \(describe(spec.preprocessing))")
        print("loss          \(spec.loss.type)")
        print("optimizer     \(spec.optimizer.type), learning rate \((try? spec.optimizer.double("lr")) ?? 0)")
        for note in t.notes { print("note          \(note)") }
        print("spec          \(t.spec)")
    }
}
