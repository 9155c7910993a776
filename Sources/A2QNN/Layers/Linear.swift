import A2QCore
import A2QQuant

/// Fully connected layer `y = x · W_qᵀ + b`, `W` of shape `[out, in]`, with a pluggable
/// per-channel weight quantizer (`float` uses `W` itself). Inputs of any rank are read as
/// `[batch, in]` (a flattened view; no copy).
public final class Linear: Layer, @unchecked Sendable {
    public let name: String
    public let inputs: Int
    public let outputs: Int
    public let weight: ParameterView
    public let bias: ParameterView?
    public let quantizer: WeightQuantizer
    public var computesInputGradient = true
    public var hasParameters: Bool { true }

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?
    private var effectiveWeight: UnsafePointer<Float>?

    /// Declares `<name>.weight` `[out, in]`, `<name>.bias` `[out]` and the quantizer's parameters.
    public init(name: String, inputs: Int, outputs: Int, bias: Bool = true,
                quantizer spec: WeightQuantizerSpec = .float, input format: InputFormat? = nil,
                layout: inout ParameterLayout) throws {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        weight = layout.declare("\(name).weight", shape: [outputs, inputs], role: .weight)
        self.bias = bias ? layout.declare("\(name).bias", shape: [outputs], role: .bias) : nil
        quantizer = try WeightQuantizer(spec: spec, layerName: name, weight: weight, outChannels: outputs,
                                        fanIn: inputs, input: format, layout: &layout)
    }

    /// PyTorch's default: U(±1/sqrt(in)) for weight and bias.
    public func initialize(_ parameters: ParameterStore, generator: inout Xoshiro256) {
        Initializer.torchDefault.fill(parameters.value(weight), count: weight.count, fanIn: inputs,
                                      fanOut: outputs, generator: &generator)
        if let bias {
            Initializer.torchDefault.fill(parameters.value(bias), count: bias.count, fanIn: inputs,
                                          fanOut: outputs, generator: &generator)
        }
        quantizer.initializeFromFloatWeights(parameters)
    }

    public func forward(_ input: Tensor, parameters: ParameterStore, training: Bool) -> Tensor {
        let batch = input.shape.first ?? 0
        precondition(batch > 0 && input.count == batch * inputs,
                     "\(name): input \(describe(input.shape)) does not fit Linear(\(inputs) → \(outputs))")
        self.input = input
        if output.shape.count != 2 || output.shape[0] != batch { output.reshape([batch, outputs]) }
        let w = quantizer.forward(parameters)
        effectiveWeight = w
        let y = output.data
        if let bias {
            let b = parameters.value(bias)
            for n in 0..<batch { (y + n * outputs).update(from: b, count: outputs) }
        }
        BLAS.gemm(transposeA: false, transposeB: true, m: batch, n: outputs, k: inputs,
                  a: input.data, lda: inputs, b: w, ldb: inputs,
                  beta: bias == nil ? 0 : 1, c: y, ldc: outputs)
        return output
    }

    public func backward(_ outputGradient: Tensor, parameters: ParameterStore) -> Tensor {
        guard let input, let w = effectiveWeight else { preconditionFailure("\(name): backward before forward") }
        let batch = input.shape[0]
        precondition(outputGradient.count == batch * outputs,
                     "\(name): gradient \(describe(outputGradient.shape)) does not match output \(describe(output.shape))")
        let dy = outputGradient.data
        if let bias {
            let db = parameters.gradient(bias)
            for n in 0..<batch {
                let row = dy + n * outputs
                for o in 0..<outputs { db[o] += row[o] }
            }
        }
        let target = quantizer.weightGradientTarget(parameters)
        BLAS.gemm(transposeA: true, transposeB: false, m: outputs, n: inputs, k: batch,
                  a: dy, lda: outputs, b: input.data, ldb: inputs,
                  beta: target.accumulate ? 1 : 0, c: target.pointer, ldc: inputs)
        quantizer.backward(parameters)
        if input.shape != inputGradient.shape { inputGradient.reshape(input.shape) }
        if computesInputGradient {
            BLAS.gemm(transposeA: false, transposeB: false, m: batch, n: inputs, k: outputs,
                      a: dy, lda: outputs, b: w, ldb: inputs, beta: 0, c: inputGradient.data, ldc: inputs)
        }
        return inputGradient
    }
}
