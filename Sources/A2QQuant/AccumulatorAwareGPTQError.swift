/// A user-facing failure of `AccumulatorAwareGPTQ.quantize`.
public enum AccumulatorAwareGPTQError: Error, CustomStringConvertible, Equatable {
    case hessianNotPositiveDefinite(stage: String, minor: Int, damping: Double)
    case nonFinite(what: String)

    public var description: String {
        switch self {
        case let .hessianNotPositiveDefinite(stage, minor, damping):
            return "AXE: the Cholesky factorisation of \(stage) failed at leading minor \(minor) (damping η = \(damping)): "
                + "the calibration Hessian is not positive definite. Use more calibration inputs, a larger damping fraction, "
                + "or check the layer's inputs for NaN or constant columns."
        case let .nonFinite(what):
            return "AXE: the layer's \(what) contain NaN or infinity; check the checkpoint and the calibration inputs."
        }
    }
}
