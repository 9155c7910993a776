import A2QCore
#if canImport(Glibc)
import Glibc
#endif

/// Mean softmax cross-entropy over a batch of logits `[N, C]` with integer labels,
/// computed stably (max-shifted log-sum-exp). Owns its gradient tensor.
public final class SoftmaxCrossEntropy: @unchecked Sendable {
    private let gradient = Tensor(shape: [0])
    private var correct = 0

    public init() {}

    /// Returns the mean loss and writes `∂loss/∂logits = (softmax − onehot)/N` for `backward`.
    public func forward(_ logits: Tensor, labels: UnsafeBufferPointer<Int32>) -> Float {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                     "SoftmaxCrossEntropy: logits \(describe(logits.shape)) for \(labels.count) labels")
        let (n, c) = (logits.shape[0], logits.shape[1])
        gradient.reshape(logits.shape)
        let z = logits.data, g = gradient.data
        var total: Double = 0
        correct = 0
        let invN = 1 / Float(n)
        for i in 0..<n {
            let row = z + i * c, out = g + i * c
            var best = row[0], bestIndex = 0
            for j in 1..<c where row[j] > best { best = row[j]; bestIndex = j }
            var sum: Float = 0
            for j in 0..<c { let e = expf(row[j] - best); out[j] = e; sum += e }
            let label = Int(labels[i])
            precondition(label >= 0 && label < c, "SoftmaxCrossEntropy: label \(label) outside 0..<\(c)")
            total += Double(logf(sum) - (row[label] - best))
            let inv = 1 / sum
            for j in 0..<c { out[j] *= inv * invN }
            out[label] -= invN
            if bestIndex == label { correct += 1 }
        }
        return Float(total / Double(n))
    }

    /// Number of argmax hits in the last `forward`.
    public var correctCount: Int { correct }

    /// The gradient of the last `forward`'s mean loss with respect to the logits.
    public func backward() -> Tensor { gradient }
}

/// Number of rows of `logits` whose argmax equals the label.
public func correctPredictions(_ logits: Tensor, labels: UnsafeBufferPointer<Int32>) -> Int {
    let (n, c) = (logits.shape[0], logits.shape[1])
    var hits = 0
    for i in 0..<n {
        let row = logits.data + i * c
        var bestIndex = 0
        for j in 1..<c where row[j] > row[bestIndex] { bestIndex = j }
        if bestIndex == Int(labels[i]) { hits += 1 }
    }
    return hits
}
