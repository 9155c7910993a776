import A2QCheckpoint
import A2QCore
import A2QData
import Foundation

/// What `a2q eval --outputs FILE` writes: per test image the predicted class, the label and the
/// class scores, and (integer engine, `--outputs-accumulators`) every accumulator's register
/// values. An HDF5 file; the layout is docs/CHECKPOINT.md, "Evaluation outputs".
public struct EvaluationOutputs: Sendable {
    public static let format = "a2q-eval-outputs"
    public static let formatVersion = 1

    /// `integer` or `fake-quantized float`.
    public var engine: String
    public var model: String
    public var classes: Int
    public var predictions: [Int32] = []
    public var labels: [Int32] = []
    /// `[images, classes]`, row-major.
    public var scores: [Float] = []
    /// Per accumulator, in execution order: its name, P, the shape of one image's values and the
    /// values of every image, `[images, ...]`.
    public var accumulators: [(name: String, accumulatorBits: Int, shape: [Int], values: [Int64])] = []
    /// The integer engine's overflow mode (nil for the float graph).
    public var overflow: OverflowMode?

    public init(engine: String, model: String, classes: Int, overflow: OverflowMode? = nil) {
        self.engine = engine
        self.model = model
        self.classes = classes
        self.overflow = overflow
    }

    public var images: Int { predictions.count }

    /// Adds one batch: scores `[n, classes]` and the labels; predictions are the argmax (the
    /// lowest class index on a tie, as the engine's and the float graph's evaluations).
    public mutating func append(scores batch: [Float], labels batchLabels: some Collection<UInt8>) {
        let n = batchLabels.count
        precondition(batch.count == n * classes, "EvaluationOutputs: \(batch.count) scores for \(n) images of \(classes) classes")
        for i in 0..<n {
            var best = 0
            for c in 1..<classes where batch[i * classes + c] > batch[i * classes + best] { best = c }
            predictions.append(Int32(best))
        }
        labels += batchLabels.map(Int32.init)
        scores += batch
    }

    /// Adds one batch of recorded accumulators (`IntegerEngine.recordedAccumulators`).
    public mutating func append(accumulators batch: [RecordedAccumulators], bits: [String: Int]) {
        if accumulators.isEmpty {
            accumulators = batch.map { ($0.name, bits[$0.name] ?? 0, Array($0.shape.dropFirst()), []) }
        }
        precondition(batch.map(\.name) == accumulators.map(\.name), "EvaluationOutputs: accumulators changed between batches")
        for (i, recorded) in batch.enumerated() { accumulators[i].values += recorded.values }
    }

    /// Fraction of predictions equal to the labels.
    public var accuracy: Double {
        Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(images, 1))
    }

    /// Writes the file atomically (a temporary file renamed into place); `source` is the
    /// evaluated file's path (its file name is stored).
    public func write(to path: String, source: String) throws {
        let temporary = path + ".tmp"
        do {
            let file = try HDF5File.create(temporary)
            try file.setAttribute("format", Self.format)
            try file.setAttribute("format_version", Self.formatVersion)
            try file.setAttribute("software_version", "a2q \(a2qVersion)")
            try file.setAttribute("source", (source as NSString).lastPathComponent)
            try file.setAttribute("model", model)
            try file.setAttribute("engine", engine)
            if let overflow { try file.setAttribute("overflow", overflow.rawValue) }
            try file.setAttribute("images", images)
            try file.setAttribute("classes", classes)
            try file.write("predictions", predictions, shape: [images])
            try file.write("labels", labels, shape: [images])
            try file.write("scores", scores, shape: [images, classes])
            if !accumulators.isEmpty {
                let group = try file.createGroup("accumulators")
                let order = try JSONEncoder().encode(accumulators.map(\.name))
                try group.setAttribute("order", String(decoding: order, as: UTF8.self))
                for accumulator in accumulators {
                    try group.write(accumulator.name, accumulator.values, shape: [images] + accumulator.shape)
                }
            }
            try file.flush()
            try file.close()
            try FileSystem.commit(temporary: temporary, to: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw A2QError("cannot write \(path): \(error)", remedy: "pass --outputs a path in a writable folder")
        }
    }
}

extension IntegerEngine {
    /// Runs `data` in batches and collects its outputs (with every accumulator when the engine
    /// records them).
    public func outputs(_ data: Dataset, batch: Int = 100) -> EvaluationOutputs {
        var outputs = EvaluationOutputs(engine: "integer", model: model.model, classes: model.classes, overflow: mode)
        data.images.withUnsafeBufferPointer { pixels in
            var start = 0
            while start < data.count {
                let m = min(batch, data.count - start)
                let slice = UnsafeBufferPointer(rebasing: pixels[(start * data.imageSize)..<((start + m) * data.imageSize)])
                outputs.append(scores: logits(pixels: slice, count: m), labels: data.labels[start..<(start + m)])
                if !recordedAccumulators.isEmpty { outputs.append(accumulators: recordedAccumulators, bits: accumulatorBits) }
                start += m
            }
        }
        return outputs
    }
}
