import Testing
@testable import DeepLearning

/// `Model.trainEpoch` against step-by-step references built from `trainStep` and the same
/// generator, and resumption across a checkpoint.
@Suite struct TrainingTests {
    static let features = 5, classes = 3

    /// A small classifier: 5 -> 8 tanh -> 3, SGD with momentum (optimizer state that a
    /// resumed run must carry over too).
    static func spec(seed: UInt64 = 11) throws -> ModelSpec {
        try SpecParser.parse(json: """
        {"input": {"size": \(features)}, "layers": [{"type": "linear", "units": 8}, {"type": "tanh"},
         {"type": "linear", "units": \(classes)}], "loss": "cross_entropy",
         "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}, "seed": \(seed)}
        """)
    }

    /// `count` samples of random features and labels.
    static func data(_ count: Int, seed: UInt64 = 3) -> (x: [Float], y: [Int32]) {
        var rng = RandomGenerator(seed: seed)
        let x = (0..<count * features).map { _ in Float(rng.normal()) }
        let y = (0..<count).map { _ in Int32(rng.below(classes)) }
        return (x, y)
    }

    @discardableResult
    static func epoch(_ model: any AnyModel, _ x: [Float], _ y: [Int32], batch: Int, shuffle: Bool = true,
                      progress: ((EpochProgress) -> Void)? = nil) throws -> EpochResult {
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { yp in
                try model.trainEpoch(x: xp.baseAddress!, targets: .labels(yp.baseAddress!), count: y.count, batchSize: batch,
                                     shuffle: shuffle, progress: progress)
            }
        }
    }

    static func values(_ model: Model<Float>) -> [[Float]] { model.parameters.map(\.value.array) }

    /// The order trainEpoch visits samples in: the identity shuffled by `generator`.
    static func order(_ count: Int, _ generator: inout RandomGenerator) -> [Int] {
        var order = (0..<Int32(count)).map { $0 }
        order.withUnsafeMutableBufferPointer { generator.shuffle($0) }
        return order.map(Int.init)
    }

    /// One epoch by hand: `trainStep` on batches gathered in `order`, the last one partial.
    static func referenceEpoch(_ model: Model<Float>, _ x: [Float], _ y: [Int32], order: [Int], batch: Int) throws -> Double {
        var lossSum = 0.0
        for start in stride(from: 0, to: order.count, by: batch) {
            let rows = Array(order[start ..< min(start + batch, order.count)])
            let bx = rows.flatMap { x[$0 * features ..< ($0 + 1) * features] }
            let by = rows.map { y[$0] }
            lossSum += try bx.withUnsafeBufferPointer { xp in
                try by.withUnsafeBufferPointer { yp in
                    try model.trainStep(x: xp.baseAddress!, batch: rows.count, targets: .labels(yp.baseAddress!))
                }
            } * Double(rows.count)
        }
        return lossSum / Double(order.count)
    }

    @Test func matchesStepByStepTrainingWithTheModelsShuffle() throws {
        let (x, y) = Self.data(50)
        let model = try Model<Float>(spec: Self.spec())
        let reference = try Model<Float>(spec: Self.spec())
        var generator = reference.rng
        var orders: [[Int]] = []
        for e in 1...3 {
            let order = Self.order(50, &generator)
            orders.append(order)
            let expectedLoss = try Self.referenceEpoch(reference, x, y, order: order, batch: 16)
            let result = try Self.epoch(model, x, y, batch: 16)
            #expect(result == EpochResult(epoch: e, meanLoss: expectedLoss, batches: 4, samples: 50))
            #expect(Self.values(model) == Self.values(reference))
            #expect(model.rng.state == generator.state)
        }
        // Each epoch draws a new order, and each order is a permutation: every sample once.
        #expect(orders[0] != orders[1] && orders[1] != orders[2])
        for order in orders { #expect(order.sorted() == Array(0..<50)) }
        #expect(model.samplesSeen == 150 && model.epoch == 3 && model.stepCount == 12)
    }

    /// A shuffled epoch can gather its batches on a background thread (`BatchLoader`, used
    /// when a CPU is left over by the kernels' threads; forced here), applying the
    /// preprocessing there: the same bits as the training thread gathering them itself, a
    /// partial last batch included; a NaN stops both at the same batch with the same error,
    /// having trained the same batches before it.
    @Test func backgroundLoadingTrainsTheSameBits() throws {
        let json = """
        {"input": {"size": 40}, "layers": [{"type": "linear", "units": 8}, {"type": "relu"},
         {"type": "linear", "units": 3}], "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05},
         "preprocessing": {"scale": 0.5, "mean": 0.25, "std": 2}, "seed": 4}
        """
        var rng = RandomGenerator(seed: 12)
        // MNIST-like: mostly one value, so the first layer takes its sparse path too
        var x = (0..<70 * 40).map { _ in rng.uniform() < 0.2 ? Float(rng.normal() * 3) : 0 }
        let y = (0..<70).map { _ in Int32(rng.below(3)) }
        func train(background: Bool, _ x: [Float]) throws -> (Model<Float>, [EpochResult], DLError?) {
            let model = try Model<Float>(spec: try SpecParser.parse(json: json))
            model.backgroundLoading = background
            var results: [EpochResult] = []
            do {
                for _ in 0..<3 {
                    results.append(try x.withUnsafeBufferPointer { xp in
                        try y.withUnsafeBufferPointer { yp in
                            try model.trainEpoch(x: xp.baseAddress!, targets: .labels(yp.baseAddress!), count: 70, batchSize: 16)
                        }
                    })
                    #expect(model.loadedInBackground == background)
                }
            } catch let error as DLError {
                return (model, results, error)
            }
            return (model, results, nil)
        }
        let (a, resultsA, _) = try train(background: true, x)
        let (b, resultsB, _) = try train(background: false, x)
        #expect(resultsA == resultsB && resultsA.count == 3)
        #expect(Self.values(a) == Self.values(b))
        #expect(a.samplesSeen == 210 && a.stepCount == 15)

        x[37 * 40 + 5] = .nan
        let (c, _, errorC) = try train(background: true, x)
        let (d, _, errorD) = try train(background: false, x)
        #expect(errorC?.kind == .numeric && errorC?.message.contains("NaN") == true)
        #expect(errorC?.message == errorD?.message)
        #expect(c.stepCount == d.stepCount && c.stepCount < 5, "stopped at the batch holding sample 37")
        #expect(Self.values(c) == Self.values(d))
    }

    @Test func withoutShuffleBatchesGoInOrderAndTheGeneratorIsUntouched() throws {
        let (x, y) = Self.data(10)
        let model = try Model<Float>(spec: Self.spec())
        let reference = try Model<Float>(spec: Self.spec())
        let before = model.rng.state
        let loss = try Self.referenceEpoch(reference, x, y, order: Array(0..<10), batch: 4)
        var reports: [EpochProgress] = []
        let result = try Self.epoch(model, x, y, batch: 4, shuffle: false) { reports.append($0) }
        #expect(result == EpochResult(epoch: 1, meanLoss: loss, batches: 3, samples: 10))
        #expect(Self.values(model) == Self.values(reference))
        #expect(model.rng.state == before)
        #expect(reports.map(\.batchesDone) == [1, 2, 3] && reports.map(\.samplesDone) == [4, 8, 10])
        #expect(reports.allSatisfy { $0.batchCount == 3 } && reports.last?.meanLoss == loss)
    }

    @Test func sameSeedGivesIdenticalParametersAndAnotherSeedDoesNot() throws {
        let (x, y) = Self.data(40)
        func trained(_ seed: UInt64) throws -> [[Float]] {
            let model = try Model<Float>(spec: Self.spec(seed: seed))
            for _ in 0..<2 { try Self.epoch(model, x, y, batch: 8) }
            return Self.values(model)
        }
        #expect(try trained(11) == trained(11))
        #expect(try trained(11) != trained(12))
    }

    @Test func resumingFromACheckpointAtAnEpochBoundaryIsBitIdentical() throws {
        let (x, y) = Self.data(45)
        let straight = try Model<Float>(spec: Self.spec())
        for _ in 0..<3 { try Self.epoch(straight, x, y, batch: 7) }

        let first = try Model<Float>(spec: Self.spec())
        try Self.epoch(first, x, y, batch: 7)
        let path = temporaryDirectory() + "/resume.h5"
        try first.save(to: path)
        let resumed = try loadModel(from: path)
        for _ in 0..<2 { try Self.epoch(resumed, x, y, batch: 7) }

        let model = try #require(resumed as? Model<Float>)
        #expect(Self.values(model) == Self.values(straight))
        #expect(model.rng.state == straight.rng.state)
        #expect(model.epoch == 3 && model.samplesSeen == straight.samplesSeen && model.stepCount == straight.stepCount)
    }

    /// `lr_decay` multiplies the learning rate after every epoch; a checkpoint keeps the
    /// decayed rate, so a resumed run follows the same schedule.
    @Test func learningRateDecaysPerEpochAndResumes() throws {
        let json = #"{"input": {"size": 5}, "layers": [{"type": "linear", "units": 3}], "loss": "cross_entropy", "#
            + #""optimizer": {"type": "adam", "lr": 0.08, "lr_decay": 0.5}, "seed": 2}"#
        let (x, y) = Self.data(20)
        let straight = try Model<Float>(spec: try SpecParser.parse(json: json))
        for expected in [0.04, 0.02, 0.01] {
            try Self.epoch(straight, x, y, batch: 6)
            #expect(abs(straight.learningRate - expected) < 1e-15)
        }
        let first = try Model<Float>(spec: try SpecParser.parse(json: json))
        try Self.epoch(first, x, y, batch: 6)
        let path = temporaryDirectory() + "/decay.h5"
        try first.save(to: path)
        let resumed = try loadModel(from: path)
        #expect(abs(resumed.learningRate - 0.04) < 1e-15)
        for _ in 0..<2 { try Self.epoch(resumed, x, y, batch: 6) }
        #expect(Self.values(try #require(resumed as? Model<Float>)) == Self.values(straight))
    }

    @Test func doubleModelsTrainThroughAnyModel() throws {
        let (x, y) = Self.data(20)
        var spec = try Self.spec()
        spec.dtype = .float64
        let model: any AnyModel = try makeModel(spec: spec)
        let result = try Self.epoch(model, x, y, batch: 6)
        #expect(result.batches == 4 && result.samples == 20 && result.meanLoss.isFinite && model.epoch == 1)
    }

    @Test func badArgumentsAndLabelsAreRefusedBeforeAnythingChanges() throws {
        let x = Self.data(12).x
        var y = Self.data(12).y
        let model = try Model<Float>(spec: Self.spec())
        let before = (Self.values(model), model.rng.state)
        func refused(_ kind: DLErrorKind, batch: Int = 4, _ fragment: String) throws {
            let error = try #require(throws: DLError.self) { try Self.epoch(model, x, y, batch: batch) }
            #expect(error.kind == kind)
            #expect(error.message.contains(fragment), "\(error.message)")
            #expect(Self.values(model) == before.0 && model.rng.state == before.1 && model.epoch == 0)
        }
        try refused(.invalidArgument, batch: 0, "batch size must be at least 1")
        y[9] = 3
        try refused(.invalidArgument, "label 3 of sample 9 is out of range")
    }

    @Test func aNonFiniteInputStopsTheEpochAtItsBatch() throws {
        var (x, y) = Self.data(12)
        x[11 * Self.features] = .infinity     // the last sample: the last batch without shuffling
        let model = try Model<Float>(spec: Self.spec())
        let error = try #require(throws: DLError.self) { try Self.epoch(model, x, y, batch: 4, shuffle: false) }
        #expect(error.kind == .numeric)
        #expect(model.stepCount == 2 && model.samplesSeen == 8 && model.epoch == 0)
    }

    @Test func regressionModelsRefuseClassLabels() throws {
        let model = try Model<Float>(spec: regressionSpec("sgd", ["lr": .double(0.1)]))
        let error = try #require(throws: DLError.self) { try Self.epoch(model, [0.5], [0], batch: 1) }
        #expect(error.kind == .unsupported)
    }

    @Test func seedAndLearningRateOverridesRewriteTheSpec() throws {
        let spec = try Self.spec().with(seed: 99, learningRate: 0.25)
        #expect(spec.seed == 99 && spec.optimizer.double("lr") == 0.25 && spec.optimizer.double("momentum") == 0.9)
        let reparsed = try SpecParser.parse(json: spec.json)
        #expect(reparsed.seed == 99 && reparsed.optimizer.double("lr") == 0.25)
        #expect(try Model<Float>(spec: spec).learningRate == 0.25)
        let error = try #require(throws: DLError.self) { try Self.spec().with(learningRate: -1) }
        #expect(error.kind == .spec && error.message.contains("optimizer.lr"), "\(error.message)")
    }
}
