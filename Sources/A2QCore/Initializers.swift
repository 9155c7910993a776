/// Weight initialisers. `fanIn` / `fanOut` are per output / input channel:
/// for a conv, `fanIn = inChannels * kh * kw`.
public enum Initializer: Sendable {
    /// Kaiming (He) uniform for ReLU networks: U(-b, b), b = sqrt(6 / fanIn).
    case kaimingUniform
    /// Kaiming normal: N(0, 2 / fanIn).
    case kaimingNormal
    /// Glorot (Xavier) uniform: U(-b, b), b = sqrt(6 / (fanIn + fanOut)).
    case glorotUniform
    /// PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
    case torchDefault
    /// A constant.
    case constant(Float)

    /// Fills `count` floats at `destination`.
    public func fill(_ destination: UnsafeMutablePointer<Float>, count: Int, fanIn: Int, fanOut: Int,
                     generator: inout Xoshiro256) {
        switch self {
        case .kaimingUniform:
            let bound = (6 / Float(fanIn)).squareRoot()
            for i in 0..<count { destination[i] = generator.uniform(-bound, bound) }
        case .kaimingNormal:
            let std = (2 / Float(fanIn)).squareRoot()
            for i in 0..<count { destination[i] = generator.normal() * std }
        case .glorotUniform:
            let bound = (6 / Float(fanIn + fanOut)).squareRoot()
            for i in 0..<count { destination[i] = generator.uniform(-bound, bound) }
        case .torchDefault:
            let bound = 1 / Float(fanIn).squareRoot()
            for i in 0..<count { destination[i] = generator.uniform(-bound, bound) }
        case .constant(let value):
            destination.update(repeating: value, count: count)
        }
    }
}
