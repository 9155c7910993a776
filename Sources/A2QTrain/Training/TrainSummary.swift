/// The end-of-run summary (`a2q train --json` prints it on one line; `summary.json` keeps it).
/// The task's metric is stored under its own name: `test_accuracy` for a classifier,
/// `test_psnr` (dB) for a restoration model, with `task` and `metric` saying which.
public struct TrainSummary: Sendable, Codable {
    public var runName: String
    public var output: String
    public var worldSize: Int
    public var steps: Int
    /// The last epoch's training loss (nil when the run only quantized, `--epochs 0`).
    public var finalTrainLoss: Double?
    public var task: TaskKind
    /// The task's test metric (accuracy, or PSNR in dB).
    public var testMetric: Double
    public var testLoss: Double
    /// The float model's test metric before conversion (a2q/a2q+ with a float phase).
    public var floatTestMetric: Double?
    /// The test metric right after conversion and activation calibration, before fine-tuning.
    public var conversionTestMetric: Double?
    /// Training images (crops) per second (all ranks together), quantized phase.
    public var imagesPerSecond: Double
    /// Fraction of zero integer weights over the constrained layers (or all quantized layers).
    public var sparsity: Double
    /// Largest ||q||₁ / T over the constrained layers' channels.
    public var worstL1Usage: Double?
    /// Every constrained layer overflow-free by the exact worst case.
    public var overflowFree: Bool
    public var layers: [LayerStatistics]
    /// Seconds per step phase (forward, backward, allreduce, optimizer, data), quantized phase.
    public var phaseSeconds: [String: Double]

    public init(runName: String, output: String, worldSize: Int, steps: Int, finalTrainLoss: Double?, task: TaskKind,
                testMetric: Double, testLoss: Double, floatTestMetric: Double?, conversionTestMetric: Double?,
                imagesPerSecond: Double, sparsity: Double, worstL1Usage: Double?, overflowFree: Bool,
                layers: [LayerStatistics], phaseSeconds: [String: Double]) {
        self.runName = runName
        self.output = output
        self.worldSize = worldSize
        self.steps = steps
        self.finalTrainLoss = finalTrainLoss
        self.task = task
        self.testMetric = testMetric
        self.testLoss = testLoss
        self.floatTestMetric = floatTestMetric
        self.conversionTestMetric = conversionTestMetric
        self.imagesPerSecond = imagesPerSecond
        self.sparsity = sparsity
        self.worstL1Usage = worstL1Usage
        self.overflowFree = overflowFree
        self.layers = layers
        self.phaseSeconds = phaseSeconds
    }

    /// The metric's name (`accuracy`, `psnr`).
    public var metric: String { task.metricName }
    /// A classifier's test accuracy (the metric).
    public var testAccuracy: Double { testMetric }

    /// Keys named at run time (`test_<metric>`).
    typealias Key = OptionKey

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        task = try c.decodeIfPresent(TaskKind.self, forKey: Key("task")) ?? .classification
        let metric = task.metricName
        runName = try c.decode(String.self, forKey: Key("run_name"))
        output = try c.decode(String.self, forKey: Key("output"))
        worldSize = try c.decode(Int.self, forKey: Key("world_size"))
        steps = try c.decode(Int.self, forKey: Key("steps"))
        finalTrainLoss = try c.decodeIfPresent(Double.self, forKey: Key("final_train_loss"))
        testMetric = try c.decode(Double.self, forKey: Key("test_\(metric)"))
        testLoss = try c.decode(Double.self, forKey: Key("test_loss"))
        floatTestMetric = try c.decodeIfPresent(Double.self, forKey: Key("float_test_\(metric)"))
        conversionTestMetric = try c.decodeIfPresent(Double.self, forKey: Key("conversion_test_\(metric)"))
        imagesPerSecond = try c.decode(Double.self, forKey: Key("images_per_second"))
        sparsity = try c.decode(Double.self, forKey: Key("sparsity"))
        worstL1Usage = try c.decodeIfPresent(Double.self, forKey: Key("worst_l1_usage"))
        overflowFree = try c.decode(Bool.self, forKey: Key("overflow_free"))
        layers = try c.decode([LayerStatistics].self, forKey: Key("layers"))
        phaseSeconds = try c.decode([String: Double].self, forKey: Key("phase_seconds"))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(runName, forKey: Key("run_name"))
        try c.encode(output, forKey: Key("output"))
        try c.encode(worldSize, forKey: Key("world_size"))
        try c.encode(steps, forKey: Key("steps"))
        try c.encode(finalTrainLoss, forKey: Key("final_train_loss"))  // null after --epochs 0
        try c.encode(task, forKey: Key("task"))
        try c.encode(metric, forKey: Key("metric"))
        try c.encode(testMetric, forKey: Key("test_\(metric)"))
        try c.encode(testLoss, forKey: Key("test_loss"))
        try c.encodeIfPresent(floatTestMetric, forKey: Key("float_test_\(metric)"))
        try c.encodeIfPresent(conversionTestMetric, forKey: Key("conversion_test_\(metric)"))
        try c.encode(imagesPerSecond, forKey: Key("images_per_second"))
        try c.encode(sparsity, forKey: Key("sparsity"))
        try c.encodeIfPresent(worstL1Usage, forKey: Key("worst_l1_usage"))
        try c.encode(overflowFree, forKey: Key("overflow_free"))
        try c.encode(layers, forKey: Key("layers"))
        try c.encode(phaseSeconds, forKey: Key("phase_seconds"))
    }
}
