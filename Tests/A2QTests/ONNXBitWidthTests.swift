import Foundation
import Testing

/// docs/EXPORT.md: "The ONNX file takes weights as int8, so M ≤ 8 and N ≤ 8 there; the QONNX file
/// has no such limit"; an export that cannot be written is refused with a message and exit 1, and
/// "no partial file is left".
@Suite("ONNX export refuses weights or activations wider than 8 bits", .serialized)
struct ONNXBitWidthTests {
    static let run = ["train", "--data", "synthetic", "--train-subset", "128", "--batch-size", "32", "--float-epochs", "1",
                      "--epochs", "1", "--max-steps", "2", "--calibration-batches", "1", "--log-every", "100"]

    /// The last weight layer 12-bit through the model file (the first and last layers keep their
    /// own width, 8 unless the file says otherwise).
    static let wideLastLayer = """
        {"format": "a2q-model", "version": 1, "name": "wide-last", "layers": [
         {"type": "flatten", "name": "flatten"},
         {"type": "linear", "name": "fc1", "out": 64}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
         {"type": "linear", "name": "fc2", "out": 64}, {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
         {"type": "linear", "name": "fc3", "weight_bits": 12}]}
        """

    @Test("M = 9 (--weight-bits: the hidden fc2), a 12-bit last layer (model file) and N = 9 (--act-bits: act1 first): --format onnx exits 1 naming the layer and the width, writes nothing, and --format qonnx exports the same checkpoint; M = N = 8 exports")
    func refusesWide() throws {
        let folder = temporaryFolder("onnx-bits")
        try Claims.write(Self.wideLastLayer, to: folder + "/wide-last.json")
        let cases: [(name: String, arguments: [String], refusal: String?)] = [
            ("w9", ["--model", "mlp", "--weight-bits", "9"], "fc2: 9-bit weights do not fit"),
            ("last12", ["--model", folder + "/wide-last.json"], "fc3: 12-bit weights do not fit"),
            ("a9", ["--model", "mlp", "--act-bits", "9"], "act1: 9-bit activations do not fit"),
            ("w8a8", ["--model", "mlp", "--weight-bits", "8", "--act-bits", "8"], nil),
        ]
        for (name, arguments, refusal) in cases {
            let run = folder + "/" + name
            let trained = try runA2Q(Self.run + arguments + ["--out", run])
            #expect(trained.status == 0, "\(name): \(trained.output)")
            let onnx = try runA2Q(["export", run + "/final.h5", "--format", "onnx", "--out", run + "/model.onnx"])
            let written = FileManager.default.fileExists(atPath: run + "/model.onnx")
            if let refusal {
                #expect(onnx.status == 1 && onnx.output.contains(refusal) && onnx.output.contains("--format qonnx"), "\(name): \(onnx.output)")
                #expect(!written && !FileManager.default.fileExists(atPath: run + "/model.onnx.tmp"), "\(name): a file was left")
                let qonnx = try runA2Q(["export", run + "/final.h5", "--format", "qonnx", "--out", run + "/model.qonnx.onnx"])
                #expect(qonnx.status == 0 && FileManager.default.fileExists(atPath: run + "/model.qonnx.onnx"), "\(name): \(qonnx.output)")
            } else {
                #expect(onnx.status == 0 && written, "\(name): \(onnx.output)")
            }
        }
    }
}
