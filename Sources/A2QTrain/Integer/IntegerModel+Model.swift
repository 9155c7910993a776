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
                                input: input, inputScale: inputScale, bias: bias, stride: conv?.stride ?? 1, padding: conv?.padding ?? 0,
                                groups: conv?.groups ?? 1)
    }

    /// The scale of the activation quantizer that feeds this layer, or nil when none does.
    public func inputScale(in model: Model) -> Float? { inputQuantizer?.scale(model.parameters) }
}

extension IntegerModel {
    /// Builds the integer model of a trained, quantized `Model` (every weight layer must have a
    /// weight quantizer; BatchNorm is folded into the preceding layer's requantisation; a
    /// residual block becomes a `residual` op with its two branches): each op of the model's
    /// description gives its integer form (`ModelOp.integerForm`).
    public init(from model: Model) throws {
        var conversion = IntegerConversion(model: model)
        guard let input = model.network.leaves.first as? ActivationQuantizer, input.name == "input" else {
            throw A2QError("\(model.name.shortName) has no input quantizer (a float model)",
                           remedy: "export a model trained with --quantizer qat, a2q or a2q+")
        }
        conversion.ops.append(IntegerInput(format: input.format, scale: input.scale(model.parameters)))
        conversion.format = input.format
        conversion.scale = input.scale(model.parameters)
        try conversion.convert(model.description.layers, prefix: "")
        try self.init(model: model.name.shortName, classes: model.classes, inputShape: model.inputShape, ops: conversion.ops)
    }
}

/// The walk that turns a trained model into integer ops (`IntegerModel(from:)`): the ops so
/// far, and the integer format and scale of the values in flight.
public struct IntegerConversion {
    let model: Model
    public var ops: [any IntegerOperation] = []
    public var format: InputFormat?
    public var scale: Float = 1

    init(model: Model) { self.model = model }

    var parameters: ParameterStore { model.parameters }

    /// Appends the integer forms of `nodes`, whose full names start with `prefix`.
    mutating func convert(_ nodes: [ModelDescription.Node], prefix: String) throws {
        for node in nodes { try node.op.integerForm(&self, name: prefix + node.name) }
    }

    /// The built layer of the full name `name`.
    func layer(_ name: String) throws -> any Layer {
        guard let layer = model.network.layer(named: name) else { throw A2QError("the model has no layer \(name)") }
        return layer
    }

    /// The integer view of the weight layer `name` (it must be quantized, with quantized inputs).
    func weightLayer(_ name: String) throws -> IntegerLayer {
        guard let quantized = model.quantizedLayers.first(where: { $0.name == name }), !quantized.quantizer.isIdentity, let format else {
            throw A2QError("layer \(name) is not quantized (float weights or float inputs)",
                           remedy: "export a model trained with --quantizer qat, a2q or a2q+")
        }
        return try quantized.integerView(in: model, input: format, inputScale: scale)
    }
}
