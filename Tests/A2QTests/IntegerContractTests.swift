import A2QCheckpoint
import A2QData
import Foundation
import Testing

/// The integer model's contract on a residual network (docs/CHECKPOINT.md, "The integer engine,
/// exactly"): the global average pool's register is an accumulator like a layer's, `verify`
/// lists every accumulator in execution order with one entry per channel, and what `eval
/// --outputs` writes equals the NumPy reference written from the document.
@Suite("The integer model's contract: the pool's register, verify's order, per-image outputs", .serialized)
struct IntegerContractTests {
    /// A resnet8 export trained briefly on a Fashion-MNIST subset (shared by the tests below).
    static let export: Result<String, Error> = Result {
        let folder = temporaryFolder("contract-resnet8")
        let trained = try runA2Q(["train", "--model", "resnet8", "--train-subset", "1000", "--batch-size", "50", "--float-epochs", "1",
                                  "--epochs", "1", "--calibration-batches", "2", "--log-every", "1000", "--out", folder], timeout: 600)
        guard trained.status == 0 else { throw ContractError.training(trained.output) }
        let export = folder + "/model.h5"
        let exported = try runA2Q(["export", folder + "/final.h5", "--out", export])
        guard exported.status == 0 else { throw ContractError.training(exported.output) }
        return export
    }

    enum ContractError: Error { case training(String) }

    /// Accumulator names in execution order, read from the export's topology attribute alone
    /// (a block's body before its shortcut), with each pool's channel count from the layer that
    /// follows it.
    func topologyOrder(_ export: String) throws -> [String] {
        let topology = try HDF5File.openForReading(export).stringAttribute("topology")
        let ops = try #require(try JSONSerialization.jsonObject(with: Data(topology.utf8)) as? [[String: Any]])
        func walk(_ ops: [[String: Any]]) -> [String] {
            ops.flatMap { op -> [String] in
                switch op["op"] as? String {
                case "conv2d", "linear", "globalavgpool": return [op["name"] as? String ?? "?"]
                case "residual":
                    return walk(op["body"] as? [[String: Any]] ?? []) + walk(op["shortcut"] as? [[String: Any]] ?? [])
                default: return []
                }
            }
        }
        return walk(ops)
    }

    @Test("verify: every accumulator in the integer model's order, the pool with one entry per channel; --accumulator-bits sets the shortcuts, not the pool")
    func verifyOrderAndPoolChannels() throws {
        let export = try Self.export.get()
        let order = try topologyOrder(export)
        #expect(order.count == 11 && order[order.count - 2] == "pool" && order.last == "fc", "\(order)")
        // The export says what the engine does between accumulators, and where it is defined.
        let requantisation = try HDF5File.openForReading(export).stringAttribute("requantisation")
        #expect(requantisation.contains("rint(y * inverse)") && requantisation.contains("\"The integer engine, exactly\""), "\(requantisation)")
        let fcInputs = try HDF5File.openForReading(export).openGroup("layers").openGroup("fc").datasetInfo("weight_int").shape[1]
        #expect(fcInputs == 64)

        let narrow = try runA2Q(["verify", export, "--layer-accumulator-bits", "pool=10", "--json"])
        #expect(narrow.status == 2, "\(narrow.output)")
        let layers = try #require((try JSONSerialization.jsonObject(with: Data(narrow.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.compactMap { $0["name"] as? String } == order, "verify's order differs from the topology's")
        let pool = try #require(layers.first { $0["name"] as? String == "pool" })
        #expect((pool["channels"] as? [Any])?.count == fcInputs, "the pool's channel entries: \(pool["channels"] ?? "none")")
        #expect((pool["unsafe_channels"] as? [Int]) == Array(0..<fcInputs), "\(pool)")
        // 7×7 uint8 values per channel on 28×28 images: at most 49·255 = 12,495.
        #expect(pool["acc_max"] as? Int == 12495 && pool["p_min"] as? Int == 15 && pool["accumulator_bits"] as? Int == 10, "\(pool)")
        let table = try runA2Q(["verify", export, "--layer-accumulator-bits", "pool=10"])
        #expect(table.status == 2 && table.output.contains("CAN OVERFLOW (\(fcInputs) channels)"), "\(table.output)")

        let hidden = try runA2Q(["verify", export, "--accumulator-bits", "20", "--json"])
        let bits = Dictionary(uniqueKeysWithValues: try #require((try JSONSerialization.jsonObject(with: Data(hidden.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
            .map { ($0["name"] as? String ?? "", $0["accumulator_bits"] as? Int ?? 0) })
        #expect(bits["stage2.block1.shortcut.conv"] == 20 && bits["stage1.block1.conv2"] == 20, "\(bits)")
        #expect(bits["conv1"] != 20 && bits["fc"] != 20 && bits["pool"] == 32, "first, last and the pool keep their own P: \(bits)")
    }

    @Test("eval --integer simulates a narrow pool register (wrap, saturate, wide) with the counts, scores and accumulators of the NumPy register",
          arguments: ["wrap", "saturate", "wide"])
    func poolRegisterIsSimulated(mode: String) throws {
        let export = try Self.export.get()
        let folder = (export as NSString).deletingLastPathComponent
        let outputs = folder + "/pool10-\(mode).h5"
        let eval = try runA2Q(["eval", "--integer", export, "--layer-accumulator-bits", "pool=10", "--overflow", mode, "--limit", "100",
                               "--outputs", outputs, "--outputs-accumulators", "--json"], timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
        let layers = try #require(result["layers"] as? [[String: Any]])
        #expect(layers.compactMap { $0["name"] as? String } == (try topologyOrder(export)))
        let pool = try #require(layers.first { $0["name"] as? String == "pool" }, "eval reports no pool entry")
        #expect(pool["accumulator_bits"] as? Int == 10 && pool["dot_products"] as? Int == 100 * 64, "\(pool)")
        #expect((pool["final_overflows"] as? Int ?? 0) > 0, "a 10-bit pool register must overflow on these images: \(pool)")

        let counts = folder + "/pool10-\(mode).json"
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "100", folder + "/pool10.bin",
                                                                 "--overflow", mode, "--bits", "pool=10", "--counts", counts, "--outputs", outputs])
        #expect(status == 0 && output.contains("compared 11 accumulators"), "\(output)")
        let numpy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: counts))) as? [String: [String: Int]])
        for key in ["dot_products", "final_overflows", "partial_overflows"] {
            #expect(pool[key] as? Int == numpy["pool"]?[key], "\(mode) pool \(key): engine \(pool[key] ?? "-"), NumPy \(numpy["pool"]?[key] ?? -1)")
        }
    }

    @Test("eval --outputs: the file's layout, the float graph's outputs too, and refusals (accumulators without --integer, an unwritable path)")
    func outputsFile() throws {
        let export = try Self.export.get()
        let folder = (export as NSString).deletingLastPathComponent
        let integer = folder + "/outputs-integer.h5", float = folder + "/outputs-float.h5"
        let a = try runA2Q(["eval", "--integer", export, "--limit", "300", "--outputs", integer, "--json"], timeout: 300)
        let b = try runA2Q(["eval", folder + "/final.h5", "--limit", "300", "--outputs", float, "--json"], timeout: 300)
        #expect(a.status == 0 && b.status == 0, "\(a.output)\n\(b.output)")
        for (path, run) in [(integer, a), (float, b)] {
            let file = try HDF5File.openForReading(path)
            #expect(try file.stringAttribute("format") == "a2q-eval-outputs" && file.intAttribute("images") == 300)
            let predictions = try file.read("predictions", as: Int32.self).values
            let labels = try file.read("labels", as: Int32.self).values
            let (scores, shape) = try file.read("scores", as: Float.self)
            #expect(shape == [300, 10] && predictions.count == 300 && labels.count == 300)
            // Each prediction is its row's argmax, and the file's accuracy is eval's.
            for i in 0..<300 {
                let row = scores[(i * 10)..<(i * 10 + 10)]
                #expect(Int(predictions[i]) == row.firstIndex(of: row.max() ?? 0).map { $0 - i * 10 })
            }
            let accuracy = Double(zip(predictions, labels).filter { $0 == $1 }.count) / 300
            let reported = (try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])?["accuracy"] as? Double
            #expect(abs((reported ?? -1) - accuracy) < 1e-12, "\(path): eval says \(reported ?? -1), the file \(accuracy)")
            #expect(!file.contains("accumulators"))
        }
        let refused = try runA2Q(["eval", folder + "/final.h5", "--outputs", folder + "/x.h5", "--outputs-accumulators"])
        #expect(refused.status == 1 && refused.output.contains("add --integer"), "\(refused.output)")
        let unwritable = try runA2Q(["eval", "--integer", export, "--limit", "10", "--outputs", "/proc/a2q/outputs.h5"])
        #expect(unwritable.status == 1 && !FileManager.default.fileExists(atPath: folder + "/x.h5"), "\(unwritable.output)")
    }
}
