import A2QCore
import Foundation
import ONNXProto
import SwiftProtobuf

/// Reading an `.onnx` file: the ModelProto, checked to be one (an empty file parses as an empty
/// ModelProto, and a file cut at a field boundary may parse too) and of an opset the importer
/// knows (13–20: what current PyTorch writes; the dynamo exporter writes 18 when asked for 17).
enum ONNXModelFile {
    /// The default-domain opsets the importer reads.
    static let opsets: ClosedRange<Int64> = 13...20
    /// The IR versions ONNX has defined for those opsets and the exporters write (7–10).
    static let irVersions: ClosedRange<Int64> = 7...11

    /// The parsed model and the folder its external data is relative to.
    static func read(_ path: String) throws -> (model: Onnx_ModelProto, folder: String) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw A2QError("cannot read the ONNX model \(path): no such file", remedy: "pass the .onnx file torch.onnx.export wrote")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw A2QError("cannot read the ONNX model \(path): \(error.localizedDescription)")
        }
        guard !data.isEmpty else {
            throw A2QError("\(path) is an empty file, not an ONNX model", remedy: "export the model again (torch.onnx.export)")
        }
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch let error as SwiftProtobuf.BinaryDecodingError {
            let reason: String
            switch error {
            case .truncated: reason = "the protobuf is truncated (the file ends inside a field): the file was cut short"
            case .malformedProtobuf: reason = "the bytes are not a protobuf message"
            case .invalidUTF8: reason = "a string field is not UTF-8"
            case .messageDepthLimit: reason = "messages are nested too deeply"
            default: reason = "\(error)"
            }
            throw A2QError("\(path) is not a readable ONNX model: \(reason) (\(data.count) bytes)",
                           remedy: "pass a complete .onnx file written by torch.onnx.export")
        } catch {
            throw A2QError("\(path) is not a readable ONNX model: \(error)", remedy: "pass a complete .onnx file written by torch.onnx.export")
        }
        guard model.irVersion > 0, model.hasGraph, !model.graph.node.isEmpty, !model.graph.output.isEmpty else {
            throw A2QError("\(path) is not an ONNX model: it parses as protobuf but has \(model.irVersion == 0 ? "no ir_version" : "no graph with nodes and an output")",
                           remedy: "pass a complete .onnx file written by torch.onnx.export")
        }
        guard irVersions.contains(model.irVersion) else {
            throw A2QError("\(path) has ONNX IR version \(model.irVersion); a2q imports IR versions \(irVersions.lowerBound)–\(irVersions.upperBound)",
                           remedy: "export with opset 13–20 from a current PyTorch")
        }
        let opset = model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version
        guard let opset, opsets.contains(opset) else {
            throw A2QError("\(path) uses ONNX opset \(opset.map(String.init) ?? "(none)"); a2q imports opsets \(opsets.lowerBound)–\(opsets.upperBound)",
                           remedy: "export with torch.onnx.export(..., opset_version=17) (the dynamo exporter writes 18, also fine)")
        }
        let folder = (path as NSString).deletingLastPathComponent
        return (model, folder.isEmpty ? "." : folder)
    }

    /// The default-domain opset of a model `read` accepted.
    static func opset(of model: Onnx_ModelProto) -> Int {
        Int(model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version ?? 0)
    }
}
