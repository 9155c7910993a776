/// The phases of the recipe. Stored in checkpoints (`phase` attribute), metrics and logs by
/// its raw value.
public enum TrainingPhase: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Float pre-training before conversion (a2q/a2q+ runs with `--float-epochs`).
    case float
    /// Quantized fine-tuning, or the only phase of a float/qat run.
    case quantized

    public var description: String { rawValue }
}
