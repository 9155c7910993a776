import A2QCore
import A2QData
import A2QInteger
import A2QNN

/// The fake-quantized float graph (what training evaluates) on a test set, single process.
public enum FakeQuantEvaluation {
    public static func accuracy(_ model: Model, _ data: Dataset, batch: Int = 100) -> Double {
        outputs(model, data, batch: batch).accuracy
    }

    /// Argmax class per image.
    public static func predictions(_ model: Model, _ data: Dataset, batch: Int = 100) -> [Int] {
        outputs(model, data, batch: batch).predictions.map(Int.init)
    }

    /// Class scores, predictions and labels of every image (what `eval --outputs` writes).
    public static func outputs(_ model: Model, _ data: Dataset, batch: Int = 100) -> EvaluationOutputs {
        var outputs = EvaluationOutputs(engine: "fake-quantized float", model: model.name.shortName, classes: model.classes)
        let x = Tensor(shape: [0])
        var labels = [Int32](repeating: 0, count: batch)
        var start = 0
        while start < data.count {
            let end = min(start + batch, data.count)
            labels.withUnsafeMutableBufferPointer { data.fill(start..<end, into: x, labels: $0) }
            let logits = model.network.forward(x, training: false)
            outputs.append(scores: Array(UnsafeBufferPointer(start: logits.data, count: (end - start) * model.classes)),
                           labels: data.labels[start..<end])
            start = end
        }
        return outputs
    }
}
