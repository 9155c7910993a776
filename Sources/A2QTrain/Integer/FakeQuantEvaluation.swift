import A2QCore
import A2QData
import A2QNN

/// Accuracy of the fake-quantized float graph (what training evaluates), single process.
public enum FakeQuantEvaluation {
    public static func accuracy(_ model: Model, _ data: Dataset, batch: Int = 100) -> Double {
        let hits = predictions(model, data, batch: batch).enumerated().filter { $0.element == Int(data.labels[$0.offset]) }.count
        return Double(hits) / Double(max(data.count, 1))
    }

    /// Argmax class per image.
    public static func predictions(_ model: Model, _ data: Dataset, batch: Int = 100) -> [Int] {
        let x = Tensor(shape: [0])
        var labels = [Int32](repeating: 0, count: batch)
        var out: [Int] = []
        var start = 0
        while start < data.count {
            let end = min(start + batch, data.count)
            labels.withUnsafeMutableBufferPointer { data.fill(start..<end, into: x, labels: $0) }
            let logits = model.network.forward(x, training: false)
            let classes = logits.shape[1]
            for i in 0..<(end - start) {
                var best = 0
                for c in 1..<classes where logits[i * classes + c] > logits[i * classes + best] { best = c }
                out.append(best)
            }
            start = end
        }
        return out
    }
}
