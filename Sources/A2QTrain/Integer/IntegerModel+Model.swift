import A2QCore
import A2QInteger
import A2QNN
import A2QQuant

extension QuantizedLayer {
    /// This layer's integer view at the model's current parameters (`IntegerLayer`'s one
    /// reader of a quantizer's integers), with its bias and the scale of the activation
    /// quantizer that feeds it; BatchNorm is not folded in.
    public func integerView(in model: Model, input: InputFormat, inputScale: Float) throws -> IntegerLayer {
        let parameters = model.parameters
        let bias = parameters.view(named: "\(name).bias").map { Array(UnsafeBufferPointer(start: parameters.value($0), count: $0.count)) }
        let conv = layer as? Conv2d
        return try IntegerLayer(quantizer: quantizer, name: name, kind: kind == .conv2d ? .conv2d : .linear, parameters: parameters,
                                input: input, inputScale: inputScale, bias: bias, stride: conv?.stride ?? 1, padding: conv?.padding ?? 0)
    }

    /// The scale of the activation quantizer that feeds this layer (the last one before it),
    /// or nil when none does.
    public func inputScale(in model: Model) -> Float? {
        guard let index = model.network.index(of: name) else { return nil }
        for candidate in model.network.layers[..<index].reversed() {
            if let q = candidate as? ActivationQuantizer { return q.scale(model.parameters) }
        }
        return nil
    }
}

extension IntegerModel {
    /// Builds the integer model of a trained, quantized `Model` (every weight layer must have a
    /// weight quantizer; BatchNorm is folded into the preceding layer's requantisation).
    public init(from model: Model, inputShape: [Int] = [1, 28, 28]) throws {
        var ops: [IntegerOp] = []
        var currentFormat: InputFormat?
        var currentScale: Float = 1
        let parameters = model.parameters
        for layer in model.network.layers {
            switch layer {
            case let q as ActivationQuantizer:
                if ops.isEmpty {
                    ops.append(.input(format: q.format, scale: q.scale(parameters)))
                } else {
                    ops.append(.quantize(name: q.name, format: q.format, scale: q.scale(parameters)))
                }
                currentFormat = q.format
                currentScale = q.scale(parameters)
            case is Linear, is Conv2d:
                guard let quantized = model.quantizedLayers.first(where: { $0.name == layer.name }),
                      !quantized.quantizer.isIdentity, let format = currentFormat else {
                    throw A2QError("layer \(layer.name) is not quantized (float weights or float inputs)",
                                   remedy: "export a model trained with --quantizer qat, a2q or a2q+")
                }
                let integer = try quantized.integerView(in: model, input: format, inputScale: currentScale)
                ops.append(.layer(integer))
                currentFormat = nil
            case let bn as BatchNorm:
                guard case .layer(var previous)? = ops.last else {
                    throw A2QError("\(bn.name) does not follow a weight layer; cannot fold it")
                }
                let gamma = parameters.value(bn.scale), beta = parameters.value(bn.shift)
                for c in 0..<bn.channels {
                    let k = gamma[c] / (bn.runningVariance[c] + bn.epsilon).squareRoot()
                    previous.multiplier[c] *= k
                    previous.offset[c] = k * (previous.offset[c] - bn.runningMean[c]) + beta[c]
                }
                previous.foldedBatchNorm = bn.name
                ops[ops.count - 1] = .layer(previous)
            case is ReLU:
                ops.append(.relu)
            case let pool as MaxPool2d:
                ops.append(.maxPool(kernel: pool.kernelSize, stride: pool.stride))
            case is Flatten:
                ops.append(.flatten)
            default:
                throw A2QError("layer \(layer.name) (\(type(of: layer))) has no integer form")
            }
        }
        try self.init(model: model.name.rawValue, classes: model.classes, inputShape: inputShape, ops: ops)
    }

}
