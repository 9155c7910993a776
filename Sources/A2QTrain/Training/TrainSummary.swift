/// The end-of-run summary (`a2q train --json` prints it on one line; `summary.json` keeps it).
public struct TrainSummary: Sendable, Codable {
    public var runName: String
    public var output: String
    public var worldSize: Int
    public var steps: Int
    public var finalTrainLoss: Double
    public var testAccuracy: Double
    public var testLoss: Double
    /// Test accuracy of the float model before conversion (a2q/a2q+ with a float phase).
    public var floatTestAccuracy: Double?
    /// Test accuracy right after conversion and activation calibration, before fine-tuning.
    public var conversionTestAccuracy: Double?
    /// Training images per second (all ranks together), quantized phase.
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

    enum CodingKeys: String, CodingKey {
        case runName = "run_name", output, worldSize = "world_size", steps, finalTrainLoss = "final_train_loss"
        case testAccuracy = "test_accuracy", testLoss = "test_loss", floatTestAccuracy = "float_test_accuracy"
        case conversionTestAccuracy = "conversion_test_accuracy", imagesPerSecond = "images_per_second", sparsity
        case worstL1Usage = "worst_l1_usage", overflowFree = "overflow_free", layers, phaseSeconds = "phase_seconds"
    }
}
