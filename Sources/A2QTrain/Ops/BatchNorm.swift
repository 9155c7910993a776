import A2QCore
import A2QInteger
import A2QNN

/// `batchnorm`: BatchNorm over the channels of `[C, H, W]` or the features of `[F]` (training
/// statistics, running averages for evaluation). Its integer form is no op of its own: it
/// folds into the requantisation of the weight layer before it.
public struct BatchNormOp: ModelOp, Equatable {
    public static let type = "batchnorm"
    public static let integerOperations: [any IntegerOperation.Type] = []
    public var name: String

    public init(name: String) { self.name = name }
    public init(name: String, fields: ModelFileFields) throws { self.name = name }
    public func encode(to fields: inout ModelFileFieldsEncoder) throws {}

    public func build(_ context: inout ModelBuildContext, name: String, state: inout ModelBuildContext.State) throws -> [any Layer] {
        guard state.shape.count == 3 || state.shape.count == 1 else {
            throw A2QError("\(name) takes [channels, height, width] or [features] but gets \(describe(state.shape))")
        }
        state.format = nil
        state.quantizer = nil
        return [BatchNorm(name: name, channels: state.shape[0], layout: &context.layout)]
    }

    /// `multiplier ← multiplier · k`, `offset ← k · (offset − μ) + β` with `k = γ / √(σ² + ε)`.
    public func integerForm(_ conversion: inout IntegerConversion, name: String) throws {
        guard let bn = try conversion.layer(name) as? BatchNorm, var previous = conversion.ops.last as? any IntegerLayerOperation else {
            throw A2QError("\(name) does not follow a weight layer; cannot fold it")
        }
        let gamma = conversion.parameters.value(bn.scale), beta = conversion.parameters.value(bn.shift)
        for c in 0..<bn.channels {
            let k = gamma[c] / (bn.runningVariance[c] + bn.epsilon).squareRoot()
            previous.layer.multiplier[c] *= k
            previous.layer.offset[c] = k * (previous.layer.offset[c] - bn.runningMean[c]) + beta[c]
        }
        previous.layer.foldedBatchNorm = bn.name
        conversion.ops[conversion.ops.count - 1] = previous
    }
}

extension ModelDescription.Node {
    /// A `batchnorm` node.
    public static func batchNorm(name: String) -> Self { Self(BatchNormOp(name: name)) }
}
