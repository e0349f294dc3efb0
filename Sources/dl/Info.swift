import ArgumentParser
import DeepLearning

/// `dl info CKPT`: what a checkpoint holds.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a checkpoint's architecture, optimizer and training state.")

    @Argument(help: "An HDF5 checkpoint written by dl or the library.") var checkpoint: String

    func run() throws {
        try runReporting { () throws(DLError) in
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
}
