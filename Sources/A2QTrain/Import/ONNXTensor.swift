import A2QCore
import Foundation
import ONNXProto

/// One constant tensor of an ONNX graph: an initializer, or the value of a `Constant` node.
/// Its values are read only when asked for (a description needs the shapes, not the weights),
/// from the protobuf itself or from the external-data file next to the model.
struct ONNXTensor: @unchecked Sendable {
    /// The tensor's name in the graph (what messages name).
    let name: String
    /// Its shape (`[]` for a scalar).
    let dims: [Int]
    let proto: Onnx_TensorProto
    /// External-data files of this model (shared by every tensor that points into one).
    let external: ONNXExternalData
    /// Set when this is the transpose of a stored `[rows, columns]` matrix (a `Transpose` node
    /// of a constant, which the TorchScript exporter leaves when it does not fold constants).
    var transposedFrom: (rows: Int, columns: Int)?

    /// Element types the importer reads.
    static let float = Int32(Onnx_TensorProto.DataType.float.rawValue)
    static let int64 = Int32(Onnx_TensorProto.DataType.int64.rawValue)

    /// The largest tensor the importer reads (2^31 elements).
    static let maxElements = 1 << 31

    init(_ proto: Onnx_TensorProto, name: String, external: ONNXExternalData) throws {
        guard proto.dims.allSatisfy({ $0 >= 0 && $0 <= Int64(ONNXTensor.maxElements) }) else {
            throw A2QError("\(external.source): tensor \(name) has the shape \(proto.dims), which is not a shape", remedy: ONNXExternalData.damaged)
        }
        let dims = proto.dims.map { Int($0) }
        var product = 1
        for d in dims {
            let (next, overflow) = product.multipliedReportingOverflow(by: d)
            guard !overflow, next <= ONNXTensor.maxElements else {
                throw A2QError("\(external.source): tensor \(name) declares \(proto.dims) elements (more than 2^31)", remedy: ONNXExternalData.damaged)
            }
            product = next
        }
        self.name = name
        self.dims = dims
        self.proto = proto
        self.external = external
    }

    /// The number of elements.
    var count: Int { dims.reduce(1, *) }

    /// Whether the tensor holds one value (`[]`, `[1]`, `[1, 1, 1, 1]`, ...).
    var isScalar: Bool { count == 1 }

    /// The ONNX element type's name (for messages).
    var typeName: String {
        Onnx_TensorProto.DataType(rawValue: Int(proto.dataType)).map { "\($0)" } ?? "type \(proto.dataType)"
    }

    /// Whether the values live in an external-data file.
    var isExternal: Bool { proto.dataLocation == .external || !proto.externalData.isEmpty }

    /// The values of a float32 tensor.
    func floats() throws -> [Float] {
        let values = try storedFloats()
        guard let (rows, columns) = transposedFrom else { return values }
        var result = [Float](repeating: 0, count: values.count)
        for r in 0..<rows { for c in 0..<columns { result[c * rows + r] = values[r * columns + c] } }
        return result
    }

    /// The float32 values as stored.
    private func storedFloats() throws -> [Float] {
        guard proto.dataType == ONNXTensor.float else {
            throw A2QError("\(external.source): tensor \(name) holds \(typeName) values; a2q imports float32 weights",
                           remedy: "export the model in float32 (model.float() before torch.onnx.export)")
        }
        if !proto.floatData.isEmpty {
            guard proto.floatData.count == count else { throw sizeError(proto.floatData.count * 4, expected: count * 4) }
            return proto.floatData
        }
        return try values(of: Float.self)
    }

    /// The values of an int64 tensor (shapes, axes, indices).
    func int64s() throws -> [Int64] {
        guard proto.dataType == ONNXTensor.int64, transposedFrom == nil else {
            throw A2QError("\(external.source): tensor \(name) holds \(typeName) values where an int64 tensor is expected")
        }
        if !proto.int64Data.isEmpty {
            guard proto.int64Data.count == count else { throw sizeError(proto.int64Data.count * 8, expected: count * 8) }
            return proto.int64Data
        }
        return try values(of: Int64.self)
    }

    /// Little-endian raw bytes (inline `raw_data` or the external file) as `count` values.
    private func values<T>(of type: T.Type) throws -> [T] {
        let size = MemoryLayout<T>.size
        let (bytes, range) = isExternal ? try external.bytes(of: self, length: count * size) : (proto.rawData, 0..<proto.rawData.count)
        guard range.count == count * size else { throw sizeError(range.count, expected: count * size) }
        guard count > 0 else { return [] }
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            bytes.withUnsafeBytes { raw in
                if let base = raw.baseAddress, let target = buffer.baseAddress {
                    memcpy(target, base + range.lowerBound, count * size)
                }
            }
            initialized = count
        }
    }

    private func sizeError(_ bytes: Int, expected: Int) -> A2QError {
        A2QError("\(external.source): tensor \(name) has \(bytes) bytes of data, but its shape \(dims) needs \(expected)", remedy: ONNXExternalData.damaged)
    }
}

/// The external-data files of one model (`NAME.onnx.data` beside `NAME.onnx`, as the dynamo
/// exporter writes by default), each opened once while the import runs.
final class ONNXExternalData: @unchecked Sendable {
    /// The folder of the model file (locations are relative to it).
    let folder: String
    /// The model file (messages start with it).
    let source: String
    private var files: [String: (FileHandle, Int)] = [:]

    static let damaged = "the file is damaged or was not written by an ONNX exporter; export the model again"

    init(folder: String, source: String) {
        self.folder = folder
        self.source = source
    }

    /// The `length` bytes the tensor's `external_data` entries point at (read from the file,
    /// not mapped: only the tensor being copied is in memory).
    func bytes(of tensor: ONNXTensor, length expected: Int) throws -> (Data, Range<Int>) {
        var entries: [String: String] = [:]
        for entry in tensor.proto.externalData { entries[entry.key] = entry.value }
        guard let location = entries["location"], !location.isEmpty else {
            throw A2QError("\(source): initializer \(tensor.name) is stored externally but names no file (no 'location')", remedy: Self.damaged)
        }
        guard !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
            throw A2QError("\(source): initializer \(tensor.name): its external data file '\(location)' is not inside the model's folder",
                           remedy: "ONNX external data must be next to the model file (a relative path without '..')")
        }
        let offset = try number(entries["offset"], "offset", tensor) ?? 0
        let (handle, size) = try file(location, tensor: tensor)
        let length = try number(entries["length"], "length", tensor) ?? (size - offset)
        guard length == expected else {
            throw A2QError("\(source): initializer \(tensor.name): its external data is \(length) bytes long, but its shape \(tensor.dims) needs \(expected)",
                           remedy: Self.damaged)
        }
        guard offset >= 0, offset <= size, length <= size - offset else {
            throw A2QError("\(source): initializer \(tensor.name): bytes \(offset)..<\(offset + length) of \(location) are past its end (\(size) bytes)",
                           remedy: "the external data file is truncated or belongs to another export; export the model again")
        }
        let data: Data
        do {
            try handle.seek(toOffset: UInt64(offset))
            data = try handle.read(upToCount: length) ?? Data()
        } catch {
            throw A2QError("\(source): initializer \(tensor.name): cannot read \(location): \(error.localizedDescription)")
        }
        guard data.count == length else {
            throw A2QError("\(source): initializer \(tensor.name): \(location) ended after \(data.count) of \(length) bytes", remedy: Self.damaged)
        }
        return (data, 0..<length)
    }

    private func number(_ text: String?, _ key: String, _ tensor: ONNXTensor) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), value >= 0 else {
            throw A2QError("\(source): initializer \(tensor.name): external data \(key) '\(text)' is not a byte count", remedy: Self.damaged)
        }
        return value
    }

    private func file(_ location: String, tensor: ONNXTensor) throws -> (FileHandle, Int) {
        if let open = files[location] { return open }
        let path = (folder as NSString).appendingPathComponent(location)
        guard FileManager.default.fileExists(atPath: path) else {
            throw A2QError("\(source): initializer \(tensor.name): external data file \(location) not found (looked for \(path))",
                           remedy: "keep the .onnx.data file the exporter wrote next to the .onnx file, or export with external_data=False")
        }
        guard let handle = FileHandle(forReadingAtPath: path),
              let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
            throw A2QError("\(source): initializer \(tensor.name): cannot read the external data file \(path)")
        }
        files[location] = (handle, size)
        return (handle, size)
    }
}
