/// Where a run is: enough, with the parameters and the optimizer state, to continue it
/// bit for bit.
public struct TrainingState: Sendable, Codable, Equatable {
    /// The phase the run is in.
    public var phase: TrainingPhase
    /// 0-based epoch inside the phase.
    public var epoch: Int
    /// Global batches already consumed in `epoch`.
    public var position: Int
    /// Optimizer steps taken in this phase.
    public var step: Int
    /// Steps taken in earlier phases (the float phase), so `step + earlierSteps` names a checkpoint.
    public var earlierSteps: Int
    /// Reduced (global) sums since the last log line: loss·n, correct, n.
    public var window: [Double]
    /// Reduced (global) sums of the current epoch: loss·n, n.
    public var epochTotals: [Double]
    /// Results of earlier phases, for the summary.
    public var floatTestAccuracy: Double?
    public var conversionTestAccuracy: Double?

    public init(phase: TrainingPhase) {
        self.phase = phase
        epoch = 0
        position = 0
        step = 0
        earlierSteps = 0
        window = [0, 0, 0]
        epochTotals = [0, 0]
    }

    /// Steps over all phases.
    public var globalStep: Int { earlierSteps + step }
}
