/// How the quantization error of a column is propagated to the later columns.
public enum GPTQErrorPropagation: Sendable, Hashable {
    /// `s·clamp_budget(x̃) − s·q`: only the rounding (and M-bit saturation) of the value after
    /// the soft threshold and the running clamp (the authors' A2GPTQ, the default). Without a
    /// budget and threshold it is plain GPTQ's error, like `.fullDifference`.
    case roundingOnly
    /// `w − s·q`: the whole change of the column, shrinkage and clamp included (GPTQ's update
    /// for whatever q was chosen).
    case fullDifference
}

/// The settings of `AccumulatorAwareGPTQ.quantize`.
public struct AccumulatorAwareGPTQOptions: Sendable, Hashable {
    /// M: integers in `[−(2^(M-1) − 1), 2^(M-1) − 1]`.
    public var weightBits: Int
    /// The per-tile limits (A2Q+, A2Q, or none: plain GPTQ).
    public var budget: TileBudget
    /// T, consecutive inputs per tile; nil is the whole dot product K.
    public var tileLength: Int?
    /// GPTQ's damping as a fraction of the mean diagonal of H.
    public var dampingFraction: Double
    /// AXE's soft threshold (off: running clamps only).
    public var softThreshold: Bool
    /// Which error GPTQ's update compensates.
    public var errorPropagation: GPTQErrorPropagation
    /// Columns per lazy-update block (GPTQ's 128).
    public var blockSize: Int

    public init(weightBits: Int, budget: TileBudget, tileLength: Int? = nil, dampingFraction: Double = 0.01,
                softThreshold: Bool = true, errorPropagation: GPTQErrorPropagation = .roundingOnly, blockSize: Int = 128) {
        self.weightBits = weightBits
        self.budget = budget
        self.tileLength = tileLength
        self.dampingFraction = dampingFraction
        self.softThreshold = softThreshold
        self.errorPropagation = errorPropagation
        self.blockSize = blockSize
    }
}
