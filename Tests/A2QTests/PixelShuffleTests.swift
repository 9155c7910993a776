import A2QCheckpoint
import A2QCore
import A2QData
import A2QNN
import A2QTrain
import Foundation
import Testing

/// PixelShuffle (depth to space), the first op added through the op registry: its float layer,
/// its model-file form, and its integer form through the engine, NumPy, qonnx and onnxruntime.
@Suite("PixelShuffle: float layer, integer form and exports", .serialized)
struct PixelShuffleTests {
    /// PyTorch's definition as reshape/transpose: `[N, C, r, r, H, W] → [N, C, H, r, W, r]`.
    static func reference(_ x: [Double], n: Int, c: Int, h: Int, w: Int, r: Int) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for b in 0..<n {
            for co in 0..<c {
                for i in 0..<r {
                    for j in 0..<r {
                        for hh in 0..<h {
                            for ww in 0..<w {
                                // x index [b][co][i][j][hh][ww] → y index [b][co][hh][i][ww][j]
                                let xi = ((((b * c + co) * r + i) * r + j) * h + hh) * w + ww
                                let yi = ((((b * c + co) * h + hh) * r + i) * w + ww) * r + j
                                y[yi] = x[xi]
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    @Test("forward is PyTorch's reshape/transpose and backward its inverse (finite differences), over random shapes and factors",
          arguments: [(1, 1, 1, 1, 2), (2, 3, 4, 5, 2), (3, 2, 3, 2, 3), (1, 1, 2, 7, 1), (2, 1, 5, 3, 4)])
    func floatLayer(shape: (Int, Int, Int, Int, Int)) {
        let (n, c, h, w, r) = shape
        let layer = PixelShuffle(name: "shuffle", factor: r)
        let store = ParameterStore(layout: ParameterLayout())
        var g = Xoshiro256(seed: UInt64(n * 1000 + c * 100 + h * 10 + w + r))
        let x = randomTensor([n, c * r * r, h, w], &g)
        checkLayer(layer, store: store, input: x) { x, _ in Self.reference(x, n: n, c: c, h: h, w: w, r: r) }
        #expect(layer.forward(x, parameters: store, training: false).shape == [n, c, h * r, w * r])
    }

    @Test("model files: a pixelshuffle round-trips, infers its output shape, and a channel count that is not a multiple of r² is refused")
    func modelFile() throws {
        let json = """
            {"format": "a2q-model", "version": 1, "name": "shuffle", "layers": [
              {"type": "conv", "name": "conv1", "out": 8, "kernel": 3},
              {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
              {"type": "pixelshuffle", "name": "shuffle", "factor": 2},
              {"type": "maxpool", "name": "pool"},
              {"type": "flatten", "name": "flatten"},
              {"type": "linear", "name": "fc"}]}
            """
        let description = try ModelDescription.decode(Data(json.utf8), source: "shuffle.json")
        let again = try ModelDescription.decode(Data(description.json().utf8), source: "again")
        #expect(again == description && description.json().contains("\"factor\" : 2"))
        var config = TrainConfig()
        config.quantizer = .a2qPlus
        let model = try ModelBuilder.build(config, quantized: true, description: description)
        #expect(model.network.layer(named: "shuffle") is PixelShuffle)
        #expect(model.quantizedLayers.map(\.weightShape) == [[8, 1, 3, 3], [10, 2 * 28 * 28]])

        let bad = json.replacingOccurrences(of: "\"out\": 8", with: "\"out\": 6")
        #expect(throws: A2QError.self) {
            _ = try ModelBuilder.build(config, quantized: true, description: try ModelDescription.decode(Data(bad.utf8), source: "bad"))
        }
        let missing = json.replacingOccurrences(of: ", \"factor\": 2", with: "")
        #expect(throws: (any Error).self) { _ = try ModelDescription.decode(Data(missing.utf8), source: "missing") }
    }

    @Test("a trained model with a pixelshuffle: the integer engine equals NumPy (every accumulator, scores bit for bit) and the fake-quantized graph; qonnx and onnxruntime run its exports")
    func integerFormAndExports() throws {
        let folder = temporaryFolder("pixelshuffle")
        let modelFile = folder + "/shuffle.json"
        try """
            {"format": "a2q-model", "version": 1, "name": "shuffle", "layers": [
              {"type": "conv", "name": "conv1", "out": 16, "kernel": 3, "stride": 2},
              {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
              {"type": "pixelshuffle", "name": "shuffle", "factor": 2},
              {"type": "conv", "name": "conv2", "out": 8, "kernel": 3, "stride": 2},
              {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
              {"type": "flatten", "name": "flatten"},
              {"type": "linear", "name": "fc"}]}
            """.write(toFile: modelFile, atomically: true, encoding: .utf8)
        let run = folder + "/run"
        let trained = try runA2Q(["train", "--model", modelFile, "--quantizer", "a2q+", "--accumulator-bits", "14", "--train-subset", "2000",
                                  "--float-epochs", "1", "--epochs", "1", "--log-every", "1000", "--out", run], timeout: 300)
        #expect(trained.status == 0, "\(trained.output)")
        let export = run + "/model.h5"
        for (format, file) in [("hdf5", export), ("qonnx", run + "/model.qonnx.onnx"), ("onnx", run + "/model.onnx")] {
            let result = try runA2Q(["export", run + "/final.h5", "--format", format, "--out", file])
            #expect(result.status == 0, "\(format): \(result.output)")
        }
        let verify = try runA2Q(["verify", export])
        #expect(verify.status == 0, "\(verify.output)")

        // The engine against NumPy's reading of docs/CHECKPOINT.md, every accumulator.
        let outputs = run + "/outputs.h5"
        let eval = try runA2Q(["eval", "--integer", export, "--limit", "200", "--outputs", outputs, "--outputs-accumulators"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "200", run + "/numpy.bin", "--outputs", outputs])
        #expect(status == 0 && output.contains("compared 3 accumulators"), "\(output)")

        // The integer engine agrees with the fake-quantized float graph on the test set.
        var predictions: [[Int32]] = []
        for (name, arguments) in [("fake", [String]()), ("integer", ["--integer"])] {
            let path = run + "/\(name).h5"
            #expect(try runA2Q(["eval", run + "/final.h5", "--limit", "2000", "--outputs", path] + arguments, timeout: 300).status == 0)
            predictions.append(try HDF5File.openForReading(path).read("predictions", as: Int32.self).values)
        }
        let differing = zip(predictions[0], predictions[1]).filter { $0 != $1 }.count
        #expect(predictions[0].count == 2000 && differing <= 4, "\(differing) of 2000 predictions differ")

        // qonnx and onnxruntime run DepthToSpace as the engine's permutation.
        let full = run + "/outputs-1000.h5"
        #expect(try runA2Q(["eval", "--integer", export, "--limit", "1000", "--outputs", full, "--outputs-accumulators"], timeout: 300).status == 0)
        let (interop, report) = try python("onnx_interop.py", [run + "/model.qonnx.onnx", run + "/model.onnx", DataSource.defaultFolder,
                                                               "1000", full, run + "/interop.json"])
        #expect(interop == 0, "\(report)")
    }
}
