import A2QCore

/// What a run learns, said once: what the data holds, the loss, the metric, and what the
/// model ends in (and so what the engine returns). The trainer, evaluation, metrics and
/// summaries talk to a task; only `ClassificationTask` knows about classes.
public protocol TrainingTask: AnyObject {
    /// `classification` or `restoration`.
    var kind: TaskKind { get }
    /// The metric's name in logs and files (`accuracy`, `psnr`).
    var metricName: String { get }
    /// Training examples per epoch.
    var trainCount: Int { get }
    /// Test examples.
    var testCount: Int { get }
    /// `[C, H, W]` of one input example.
    var inputShape: [Int] { get }
    /// What one example's model output must be (`[classes]`, or the upscaled image).
    var outputShape: [Int] { get }
    /// Class count for classification builds (linear layers without `out`); 0 otherwise.
    var classes: Int { get }
    /// Writes training examples `indices` of `epoch` into `input` (and the task's targets).
    func fillTraining(_ indices: ArraySlice<Int>, epoch: Int, input: Tensor)
    /// Writes test examples `range` into `input` (and the task's targets).
    func fillTest(_ range: Range<Int>, input: Tensor)
    /// The mean loss of `output` against the last filled targets; `lossGradient` is its gradient.
    func loss(_ output: Tensor) -> Float
    var lossGradient: Tensor { get }
    /// The metric summed over the last filled batch (accuracy: correct predictions; PSNR: each
    /// image's dB), so that sums over ranks divided by counts give the metric.
    func metricSum(_ output: Tensor) -> Double
    /// The metric as people read it (`91.23%`, `30.12 dB`).
    func format(metric: Double) -> String
}

/// The kinds of task.
public enum TaskKind: String, Sendable, Codable, CaseIterable {
    /// Labels; softmax cross-entropy; accuracy; class scores.
    case classification
    /// Image pairs; mean squared error; PSNR on outputs rounded to 8 bits, per image then
    /// averaged; an image.
    case restoration

    public var metricName: String { self == .classification ? "accuracy" : "psnr" }
}
