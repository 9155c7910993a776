import A2QCore
import A2QData
import A2QNN
import Testing

@Suite("A small model learns a synthetic problem")
struct TrainingSmokeTests {
    func train(optimizerName: String) throws -> Double {
        let data = SyntheticDataset.make(count: 1200, classes: 4, height: 8, width: 8, seed: 3)
        var layout = ParameterLayout()
        let layers: [any Layer] = [
            try Conv2d(name: "conv", inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, layout: &layout),
            BatchNorm(name: "bn", channels: 4, layout: &layout),
            ReLU(name: "relu1"),
            MaxPool2d(name: "pool", kernelSize: 2),
            Flatten(name: "flat"),
            try Linear(name: "fc1", inputs: 64, outputs: 32, layout: &layout),
            ReLU(name: "relu2"),
            try Linear(name: "fc2", inputs: 32, outputs: 4, layout: &layout),
        ]
        let model = Network(layers: layers, layout: layout)
        var g = Xoshiro256(seed: 1)
        model.initialize(generator: &g)
        let optimizer: any Optimizer = optimizerName == "adam"
            ? Adam(parameterCount: model.parameters.count)
            : SGD(parameterCount: model.parameters.count, momentum: 0.9, nesterov: true)
        let lr: Float = optimizerName == "adam" ? 3e-3 : 3e-2
        let loss = SoftmaxCrossEntropy()
        let x = Tensor(shape: [0])
        var labels = [Int32](repeating: 0, count: 32)
        let trainCount = 1000
        for epoch in 0..<4 {
            let order = Xoshiro256(seed: UInt64(epoch)).permutationCopy(trainCount)
            for start in stride(from: 0, to: trainCount, by: 32) where start + 32 <= trainCount {
                labels.withUnsafeMutableBufferPointer { data.fill(order[start..<(start + 32)], into: x, labels: $0) }
                model.parameters.zeroGradients()
                let logits = model.forward(x, training: true)
                _ = labels.withUnsafeBufferPointer { loss.forward(logits, labels: $0) }
                model.backward(loss.backward())
                optimizer.step(model.parameters, learningRate: lr)
            }
        }
        var correct = 0
        var testLabels = [Int32](repeating: 0, count: 200)
        testLabels.withUnsafeMutableBufferPointer { data.fill(trainCount..<1200, into: x, labels: $0) }
        let logits = model.forward(x, training: false)
        correct = testLabels.withUnsafeBufferPointer { correctPredictions(logits, labels: $0) }
        return Double(correct) / 200
    }

    @Test("Adam and SGD+Nesterov each reach > 95% held-out accuracy", arguments: ["adam", "sgd"])
    func learns(optimizerName: String) throws {
        let accuracy = try train(optimizerName: optimizerName)
        #expect(accuracy > 0.95, "held-out accuracy \(accuracy)")
    }
}

extension Xoshiro256 {
    func permutationCopy(_ n: Int) -> [Int] { var g = self; return g.permutation(n) }
}
