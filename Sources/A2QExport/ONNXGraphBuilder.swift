import Foundation
import ONNXProto

/// Builds an ONNX graph node by node: initializers, nodes with attributes, value infos and
/// the `finn_datatype` annotations that QONNX tools read. Names are made unique by the caller.
struct ONNXGraphBuilder {
    private(set) var graph = Onnx_GraphProto()

    init(name: String) { graph.name = name }

    /// A float32 initializer.
    mutating func constant(_ name: String, _ values: [Float], shape: [Int]) -> String {
        precondition(values.count == shape.reduce(1, *), "ONNX constant \(name): \(values.count) values for shape \(shape)")
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dims = shape.map(Int64.init)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.rawData = values.withUnsafeBytes { Data($0) }  // little-endian, as ONNX specifies
        graph.initializer.append(tensor)
        return name
    }

    /// An integer initializer of ONNX type `type` (int8, uint8, int16 or int32 storage).
    mutating func integerConstant(_ name: String, _ values: [Int32], shape: [Int], type: Onnx_TensorProto.DataType) -> String {
        precondition(values.count == shape.reduce(1, *), "ONNX constant \(name): \(values.count) values for shape \(shape)")
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dims = shape.map(Int64.init)
        tensor.dataType = Int32(type.rawValue)
        switch type {
        case .int8: tensor.rawData = Data(values.map { UInt8(bitPattern: Int8(clamping: $0)) })
        case .uint8: tensor.rawData = Data(values.map { UInt8(clamping: $0) })
        case .int16: tensor.rawData = values.map { Int16(clamping: $0) }.withUnsafeBytes { Data($0) }
        case .int64: tensor.rawData = values.map { Int64($0) }.withUnsafeBytes { Data($0) }
        default: tensor.rawData = values.withUnsafeBytes { Data($0) }
        }
        graph.initializer.append(tensor)
        return name
    }

    /// Appends a node and returns its (single) output name.
    @discardableResult
    mutating func node(_ type: String, _ inputs: [String], output: String, domain: String = "",
                       attributes: [Onnx_AttributeProto] = []) -> String {
        var node = Onnx_NodeProto()
        node.opType = type
        node.domain = domain
        node.name = output + "." + type
        node.input = inputs
        node.output = [output]
        node.attribute = attributes
        graph.node.append(node)
        return output
    }

    /// A float32 tensor description; a leading batch dimension of `batch` (symbolic when nil)
    /// unless `batched` is false.
    static func floatValue(_ name: String, batch: Int?, shape: [Int], batched: Bool = true) -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var batchDimension = Onnx_TensorShapeProto.Dimension()
        if let batch { batchDimension.dimValue = Int64(batch) } else { batchDimension.dimParam = "batch" }
        tensorType.shape.dim = (batched ? [batchDimension] : []) + shape.map {
            var d = Onnx_TensorShapeProto.Dimension()
            d.dimValue = Int64($0)
            return d
        }
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var value = Onnx_ValueInfoProto()
        value.name = name
        value.type = type
        return value
    }

    mutating func input(_ name: String, batch: Int?, shape: [Int]) {
        graph.input.append(Self.floatValue(name, batch: batch, shape: shape))
    }

    mutating func output(_ name: String, batch: Int?, shape: [Int]) {
        graph.output.append(Self.floatValue(name, batch: batch, shape: shape))
    }

    /// Declares the shape of an intermediate float32 tensor (`value_info`).
    mutating func describe(_ name: String, batch: Int?, shape: [Int], batched: Bool = true) {
        graph.valueInfo.append(Self.floatValue(name, batch: batch, shape: shape, batched: batched))
    }

    /// Records that `tensor` holds integers of a FINN/QONNX datatype (`INT8`, `UINT4`, `INT17`).
    mutating func annotate(_ tensor: String, datatype: String) {
        var entry = Onnx_StringStringEntryProto()
        entry.key = "finn_datatype"
        entry.value = datatype
        var annotation = Onnx_TensorAnnotation()
        annotation.tensorName = tensor
        annotation.quantParameterTensorNames = [entry]
        graph.quantizationAnnotation.append(annotation)
    }

    static func attribute(_ name: String, int value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func attribute(_ name: String, ints values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values.map(Int64.init)
        return a
    }

    static func attribute(_ name: String, string value: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .string
        a.s = Data(value.utf8)
        return a
    }
}
