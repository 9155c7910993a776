import A2QCore

/// Updates the parameter store from its gradient buffer. State buffers mirror the parameter
/// buffer (same offsets), so one walk over the ordered views updates everything.
public protocol Optimizer: AnyObject {
    /// Applies one update with learning rate `learningRate`.
    func step(_ parameters: ParameterStore, learningRate: Float)
    /// Number of steps taken.
    var stepCount: Int { get set }
    /// Named state buffers (for checkpoints), each `parameters.count` long.
    var stateBuffers: [(name: String, buffer: UnsafeMutableBufferPointer<Float>)] { get }
}

/// Which views weight decay applies to: by default only `.weight` roles.
public typealias DecayPolicy = @Sendable (ParameterView) -> Bool

/// The default policy: decay weights, never norms, scales or biases.
public let decayWeightsOnly: DecayPolicy = { $0.role.isDecayed }
