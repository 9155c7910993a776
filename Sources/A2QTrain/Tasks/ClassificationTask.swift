import A2QCore
import A2QData
import A2QNN

/// Image classification: 8-bit images with labels (`Dataset`), softmax cross-entropy, accuracy.
public final class ClassificationTask: TrainingTask {
    public let train: Dataset
    public let test: Dataset
    private var labels: [Int32] = []
    private let crossEntropy = SoftmaxCrossEntropy()
    private var filled = 0

    public init(train: Dataset, test: Dataset) {
        self.train = train
        self.test = test
    }

    public var kind: TaskKind { .classification }
    public var metricName: String { TaskKind.classification.metricName }
    public var trainCount: Int { train.count }
    public var testCount: Int { test.count }
    public var inputShape: [Int] { train.imageShape }
    public var outputShape: [Int] { [train.classes] }
    public var classes: Int { train.classes }

    public func fillTraining(_ indices: ArraySlice<Int>, epoch: Int, input: Tensor) {
        fill(train, indices, input)
    }

    public func fillTest(_ range: Range<Int>, input: Tensor) {
        fill(test, range, input)
    }

    private func fill<C: Collection>(_ data: Dataset, _ indices: C, _ input: Tensor) where C.Element == Int {
        if labels.count < indices.count { labels = [Int32](repeating: 0, count: indices.count) }  // grows once
        labels.withUnsafeMutableBufferPointer { data.fill(indices, into: input, labels: $0) }
        filled = indices.count
    }

    public func loss(_ output: Tensor) -> Float {
        labels.withUnsafeBufferPointer { crossEntropy.forward(output, labels: UnsafeBufferPointer(rebasing: $0[0..<filled])) }
    }

    public var lossGradient: Tensor { crossEntropy.backward() }

    /// Correct predictions of the last `loss` call (its argmax), or counted afresh.
    public func metricSum(_ output: Tensor) -> Double {
        Double(labels.withUnsafeBufferPointer { correctPredictions(output, labels: UnsafeBufferPointer(rebasing: $0[0..<filled])) })
    }

    public func format(metric: Double) -> String { String(format: "%.2f%%", 100 * metric) }

    /// The last filled batch's labels (distillation, tests).
    public var batchLabels: ArraySlice<Int32> { labels[0..<filled] }
}
