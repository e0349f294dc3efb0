// The tutorial's MNIST example in Swift (docs/tutorial-swift.md): the TwoLayerMLP
// 784-128-10 trained with SGD (learning rate 0.01, batches of 64, reshuffled every epoch)
// on standardized pixels, evaluated on the test split after every epoch, saved.
//
//     swift-mnist DATA_DIR [EPOCHS [CHECKPOINT]]
import DeepLearning
import Glibc

/// The tutorial's TwoLayerMLP: Linear(784, 128), ReLU, Linear(128, 10), softmax
/// cross-entropy, plain SGD. The same model as specs/mnist_mlp.json.
let spec = """
{"format_version": 1, "name": "mnist_mlp", "input": {"size": 784},
 "layers": [{"type": "linear", "units": 128}, {"type": "relu"}, {"type": "linear", "units": 10}],
 "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.01}, "init": "he_normal", "seed": 0}
"""

func train(dataDirectory: String, epochs: Int, checkpoint: String) throws(DLError) {
    // 1. The data, kept as stored: pixels 0...255.
    let train = try Dataset.loadMNIST(directory: dataDirectory, split: .train)
    let test = try Dataset.loadMNIST(directory: dataDirectory, split: .test)

    // 2. The model, and the tutorial's standardization: scale by 1/255, then subtract the
    //    training set's mean and divide by its std. The model applies it to raw input.
    let model = try makeModel(spec: try SpecParser.parse(json: spec))
    let s = try Standardizer.fit(train, scale: 1.0 / 255)
    try model.setPreprocessing(Preprocessing(scale: s.scale, mean: s.mean, std: s.std))
    print("standardization: mean \(s.mean), std \(s.std)")

    // 3. Training: each epoch in a new order, from the model's own seeded generator.
    for epoch in 1...max(epochs, 1) {
        let result = try model.trainEpoch(on: train, batchSize: 64)
        let (testLoss, testAccuracy) = try model.evaluate(on: test)
        print("epoch \(epoch)/\(epochs)  loss \(result.meanLoss)  test loss \(testLoss)  "
              + "test accuracy \(100 * (testAccuracy ?? 0))%")
    }

    // 4. A checkpoint that h5py, dl and loadModel(from:) read back.
    try model.save(to: checkpoint)
    print("saved \(checkpoint)")
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: swift-mnist DATA_DIR [EPOCHS [CHECKPOINT]]")
    exit(2)
}
do throws(DLError) {
    try train(dataDirectory: arguments[1], epochs: arguments.count > 2 ? Int(arguments[2]) ?? 5 : 5,
              checkpoint: arguments.count > 3 ? arguments[3] : "mnist_mlp.h5")
} catch {
    print("swift-mnist: \(error.message)")
    exit(1)
}
