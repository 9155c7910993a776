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

    /// The scale of the activation quantizer that feeds this layer, or nil when none does.
    public func inputScale(in model: Model) -> Float? { inputQuantizer?.scale(model.parameters) }
}

extension IntegerModel {
    /// The accumulator width given to global average pools (as the first and last layers,
    /// their own 32 bits; `verify --layer-accumulator-bits NAME=P` asks about narrower ones).
    public static let poolAccumulatorBits = 32

    /// Builds the integer model of a trained, quantized `Model` (every weight layer must have a
    /// weight quantizer; BatchNorm is folded into the preceding layer's requantisation; a
    /// residual block becomes a `residual` op with its two branches).
    public init(from model: Model) throws {
        var converter = Converter(model: model)
        let ops = try converter.convert(model.network.root.layers)
        try self.init(model: model.name.shortName, classes: model.classes, inputShape: model.inputShape, ops: ops)
    }

    /// Walks the layer tree, keeping the integer format and scale of the values in flight.
    private struct Converter {
        let model: Model
        var format: InputFormat?
        var scale: Float = 1

        init(model: Model) { self.model = model }

        mutating func convert(_ layers: [any Layer]) throws -> [IntegerOp] {
            var ops: [IntegerOp] = []
            let parameters = model.parameters
            for layer in layers {
                switch layer {
                case let sequence as Sequential:
                    ops += try convert(sequence.layers)
                case let block as Residual:
                    let entry = self
                    let body = try convert(block.body.layers)
                    let bodyEnd = format
                    self = entry
                    let shortcut = try block.shortcut.map { try convert($0.layers) }
                    guard bodyEnd != nil, format != nil else {
                        throw A2QError("residual \(block.name): a branch does not end in quantized values")
                    }
                    ops.append(.residual(name: block.name, body: body, shortcut: shortcut))
                    format = nil
                case let q as ActivationQuantizer:
                    if ops.isEmpty && format == nil && layer === model.network.leaves.first {
                        ops.append(.input(format: q.format, scale: q.scale(parameters)))
                    } else {
                        ops.append(.quantize(name: q.name, format: q.format, scale: q.scale(parameters)))
                    }
                    format = q.format
                    scale = q.scale(parameters)
                case is Linear, is Conv2d:
                    guard let quantized = model.quantizedLayers.first(where: { $0.name == layer.name }),
                          !quantized.quantizer.isIdentity, let format else {
                        throw A2QError("layer \(layer.name) is not quantized (float weights or float inputs)",
                                       remedy: "export a model trained with --quantizer qat, a2q or a2q+")
                    }
                    ops.append(.layer(try quantized.integerView(in: model, input: format, inputScale: scale)))
                    self.format = nil
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
                case let pool as GlobalAvgPool:
                    ops.append(.globalAvgPool(name: pool.name, accumulatorBits: IntegerModel.poolAccumulatorBits))
                    format = nil
                default:
                    throw A2QError("layer \(layer.name) (\(type(of: layer))) has no integer form")
                }
            }
            return ops
        }
    }
}
