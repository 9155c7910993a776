import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import A2QQuant
import Foundation
import Testing

/// Multi-stage accumulation (tiles): the quantizers' per-tile budgets, the proof, the files and
/// the integer engine's per-tile and outer registers (docs/CHECKPOINT.md, "Tiles").
@Suite("Multi-stage accumulation: per-tile budgets, the two-stage proof, the engine's tile and outer registers", .serialized)
struct MultiStageAccumulationTests {
    /// A tiled quantizer over a `[out, K]` weight.
    static func quantizer(_ kind: WeightQuantizerKind, out: Int, k: Int, m: Int, p: Int, tile: Int?, input: InputFormat)
        throws -> (WeightQuantizer, ParameterStore) {
        var layout = ParameterLayout()
        let weight = layout.declare("layer.weight", shape: [out, k], role: .weight)
        let q = try WeightQuantizer(spec: WeightQuantizerSpec(kind: kind, weightBits: m, accumulatorBits: p, accumulatorTile: tile),
                                    layerName: "layer", weight: weight, outChannels: out, fanIn: k, input: input, layout: &layout)
        return (q, ParameterStore(layout: layout))
    }

    /// Every tile of every channel within its budget and its P-bit register, every whole dot
    /// product within the 32-bit outer register, every integer within ±qmax.
    static func checkTiles(_ q: [Int32], out: Int, k: Int, tile: Int, m: Int, p: Int, plus: Bool, bound: Double,
                           input: InputFormat, context: String) -> Bool {
        let qmax = Int32((1 << (m - 1)) - 1)
        var ok = true
        for o in 0..<out {
            let row = Array(q[(o * k)..<((o + 1) * k)])
            if !row.allSatisfy({ abs($0) <= qmax }) { ok = false; Issue.record("\(context): |q| above \(qmax)") }
            let (lo, hi) = AccumulatorBounds.worstCase(row, input: input)
            if !AccumulatorBounds.fits(minimum: lo, maximum: hi, accumulatorBits: 32) { ok = false; Issue.record("\(context): whole sum beyond 32 bits") }
            for start in stride(from: 0, to: k, by: tile) {
                let part = row[start..<min(start + tile, k)]
                let alpha = part.filter { $0 > 0 }.reduce(Int64(0)) { $0 + Int64($1) }
                let beta = part.filter { $0 < 0 }.reduce(Int64(0)) { $0 - Int64($1) }
                let withinBudget = plus ? (Double(alpha) <= (bound / 2).rounded(.down) && Double(beta) <= (bound / 2).rounded(.down))
                    : Double(alpha + beta) <= bound
                let (a, b) = AccumulatorBounds.worstCase(part, input: input)
                if !withinBudget || !AccumulatorBounds.fits(minimum: a, maximum: b, accumulatorBits: p) {
                    ok = false
                    Issue.record("\(context): channel \(o) tile at \(start): α \(alpha) β \(beta) T \(bound), range [\(a), \(b)] vs P=\(p)")
                }
            }
        }
        return ok
    }

    @Test("Property: after every step (gradient step, norm jitter, re-projection) every tile keeps its budget and fits P, over random T, P, N, M, K, out")
    func perTileBoundsHoldAfterEveryStep() throws {
        var g = Xoshiro256(seed: 2026)
        var configurations = 0, tiledCases = 0
        for trial in 0..<300 {
            let plus = trial % 2 == 0
            let kind: WeightQuantizerKind = plus ? .a2qPlus : .a2q
            let k = 1 + Int(g.next() % 700)
            let tile = 1 + Int(g.next() % UInt64(k + 8))   // sometimes ≥ K: one tile
            let m = 2 + Int(g.next() % 7), n = 2 + Int(g.next() % 7)
            let input = InputFormat(bits: n, signed: !plus && g.next() % 2 == 0)
            guard let smallest = AccumulatorBounds.smallestUsefulBits(plus: plus, input: input) else { continue }
            let p = smallest + Int(g.next() % UInt64(max(24 - smallest, 1)))
            let out = 1 + Int(g.next() % 4)
            let tiles = (k + min(tile, k) - 1) / min(tile, k)
            guard Double(tiles) * exp2(Double(p - 1)) <= exp2(31) - 1 else { continue }  // the outer register must hold them
            let (quantizer, store) = try Self.quantizer(kind, out: out, k: k, m: m, p: p, tile: tile, input: input)
            #expect(quantizer.tileCount == tiles && quantizer.tileLength == min(tile, k))
            if tiles > 1 { tiledCases += 1 }
            let v = store.value(quantizer.weight)
            for o in 0..<out {
                QuantizerPropertyTests.fill(v + o * k, k, QuantizerPropertyTests.Distribution.allCases[Int(g.next() % 7)], &g)
            }
            let methods: [WeightInitMethod] = [.naive, .ep, .epScaled]
            quantizer.initializeFromFloatWeights(store, method: methods[trial % 3])
            let context = "\(kind) K=\(k) T=\(tile) M=\(m) \(input) P=\(p) out=\(out)"
            for step in 0..<5 {
                _ = quantizer.forward(store)
                let q = try quantizer.integerWeights()
                guard Self.checkTiles(q, out: out, k: k, tile: min(tile, k), m: m, p: p, plus: plus, bound: quantizer.bound,
                                      input: input, context: "\(context) step \(step)") else { break }
                // A training step: random upstream gradient through backward, a large SGD step on
                // every parameter, norms pushed past the budget, then the per-step upkeep.
                store.zeroGradients()
                let (target, _) = quantizer.weightGradientTarget(store)
                for i in 0..<(out * k) { target[i] = g.uniform(-1, 1) }
                quantizer.backward(store)
                let values = store.value(quantizer.weight), gradients = store.gradient(quantizer.weight)
                for i in 0..<(out * k) { values[i] -= 0.5 * gradients[i] }
                if let logNorm = quantizer.logNorm {
                    for i in 0..<logNorm.count { store.value(logNorm)[i] += g.uniform(-1, 3) }
                }
                if let logScale = quantizer.logScale {
                    for o in 0..<out { store.value(logScale)[o] += g.uniform(-0.5, 0.5) }
                }
                quantizer.reproject(store)
                if step % 2 == 1 { quantizer.projectDirections(store) }
            }
            configurations += 1
        }
        #expect(configurations > 200 && tiledCases > 150, "\(configurations) configurations, \(tiledCases) with several tiles")
    }

    @Test("T ≥ K is the untiled quantizer bit for bit: parameters, w_q, ∂L/∂v, ∂L/∂d, ∂L/∂t, after init, steps and re-projection",
          arguments: [WeightQuantizerKind.a2q, .a2qPlus])
    func wholeTileIsToday(kind: WeightQuantizerKind) throws {
        let (out, k) = (5, 37)
        let input = InputFormat(bits: 8, signed: false)
        let runs = try [nil, k, 10 * k].map { tile -> [[Float]] in
            let (quantizer, store) = try Self.quantizer(kind, out: out, k: k, m: 6, p: 15, tile: tile, input: input)
            #expect(quantizer.tileCount == 1 && quantizer.logNorm?.shape == [out])
            var g = Xoshiro256(seed: 11)
            let v = store.value(quantizer.weight)
            for i in 0..<(out * k) { v[i] = g.uniform(-1, 1) }
            quantizer.initializeFromFloatWeights(store, method: .epScaled)
            var trace: [[Float]] = []
            for _ in 0..<3 {
                let wq = quantizer.forward(store)
                trace.append(Array(UnsafeBufferPointer(start: wq, count: out * k)))
                store.zeroGradients()
                let (target, _) = quantizer.weightGradientTarget(store)
                for i in 0..<(out * k) { target[i] = g.uniform(-1, 1) }
                quantizer.backward(store)
                trace.append(store.gradientsArray())
                let values = store.value(quantizer.weight), gradients = store.gradient(quantizer.weight)
                for i in 0..<(out * k) { values[i] -= 0.1 * gradients[i] }
                quantizer.reproject(store)
                quantizer.projectDirections(store)
                trace.append(store.valuesArray())
            }
            return trace
        }
        for run in runs.dropFirst() {
            #expect(run.map { $0.map(\.bitPattern) } == runs[0].map { $0.map(\.bitPattern) }, "a tile of K or more must change nothing")
        }
    }

    @Test("The quantizer refuses an outer register that tile sums can exceed, and a tile that is not positive")
    func refusals() throws {
        let input = InputFormat(bits: 8, signed: false)
        // 40 tiles of 16-bit sums need 16 + 6 bits.
        var layout = ParameterLayout()
        let weight = layout.declare("fc.weight", shape: [2, 400], role: .weight)
        #expect(throws: A2QError.self) {
            _ = try WeightQuantizer(spec: WeightQuantizerSpec(kind: .a2qPlus, weightBits: 8, accumulatorBits: 16, accumulatorTile: 10,
                                                              outerAccumulatorBits: 20),
                                    layerName: "fc", weight: weight, outChannels: 2, fanIn: 400, input: input, layout: &layout)
        }
        #expect(throws: A2QError.self) {
            _ = try WeightQuantizer(spec: WeightQuantizerSpec(kind: .a2q, weightBits: 8, accumulatorBits: 16, accumulatorTile: 0),
                                    layerName: "fc", weight: weight, outChannels: 2, fanIn: 400, input: input, layout: &layout)
        }
        let (quantizer, _) = try Self.quantizer(.a2qPlus, out: 2, k: 400, m: 8, p: 16, tile: 10, input: input)
        #expect(quantizer.tileCount == 40)
        let qat = try runA2Q(["train", "--quantizer", "qat", "--accumulator-tile", "64", "--data", "synthetic", "--epochs", "1"])
        #expect(qat.status == 1 && qat.output.contains("--accumulator-tile applies to the accumulator-aware quantizers"), "\(qat.output)")
        let outer = try runA2Q(["train", "--data", "synthetic", "--epochs", "1", "--outer-accumulator-bits", "24"])
        #expect(outer.status == 1 && outer.output.contains("needs --accumulator-tile"), "\(outer.output)")
    }

    /// A `cnn` trained briefly with A2Q+ at P = 16 in tiles of 64, and its export (shared below).
    static let tiledExport: Result<String, Error> = Result {
        let folder = temporaryFolder("tiles-cnn")
        let trained = try runA2Q(["train", "--model", "cnn", "--quantizer", "a2q+", "--accumulator-bits", "16", "--accumulator-tile", "64",
                                  "--train-subset", "1000", "--float-epochs", "1", "--epochs", "1", "--calibration-batches", "2",
                                  "--log-every", "1000", "--out", folder], timeout: 600)
        guard trained.status == 0 else { throw TileError.run(trained.output) }
        let exported = try runA2Q(["export", folder + "/final.h5", "--out", folder + "/model.h5"])
        guard exported.status == 0 else { throw TileError.run(exported.output) }
        return folder + "/model.h5"
    }

    enum TileError: Error { case run(String) }

    @Test("verify proves both stages: every tile against P, every whole dot product against the outer register; files carry the tile")
    func verifyTwoStages() throws {
        let export = try Self.tiledExport.get()
        let file = try HDF5File.openForReading(export)
        #expect(try file.intAttribute("format_version") == 3)
        let conv2 = try file.openGroup("layers").openGroup("conv2")
        #expect(try conv2.intAttribute("accumulator_tile") == 64 && conv2.intAttribute("outer_accumulator_bits") == 32)
        #expect(try conv2.datasetInfo("tile_acc_max").shape == [64, 5], "conv2: K = 32·3·3 = 288 → 5 tiles")
        #expect(!(try file.openGroup("layers").openGroup("conv1").hasAttribute("accumulator_tile")), "first layer: unconstrained, untiled")

        let verdict = try runA2Q(["verify", export, "--json"])
        #expect(verdict.status == 0, "\(verdict.output)")
        let layers = try #require((try JSONSerialization.jsonObject(with: Data(verdict.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        let entry = try #require(layers.first { $0["name"] as? String == "conv2" })
        #expect(entry["accumulator_tile"] as? Int == 64 && entry["outer_accumulator_bits"] as? Int == 32 && entry["accumulator_bits"] as? Int == 16)
        let pMin = try #require(entry["p_min"] as? Int), outerPMin = try #require(entry["outer_p_min"] as? Int)
        #expect(pMin <= 16 && outerPMin > 16, "tiles fit 16 bits (\(pMin)) while whole sums need more (\(outerPMin)): the point of tiles")
        let channel = try #require((entry["channels"] as? [[String: Any]])?.first)
        #expect((channel["tile_acc_max"] as? [Int])?.count == 5)

        // A tile register one bit too narrow for the widest tile: CAN OVERFLOW; an outer register
        // narrower than the whole sums: CAN OVERFLOW although every tile fits.
        let narrow = try runA2Q(["verify", export, "--layer-accumulator-bits", "conv2=\(pMin - 1)"])
        #expect(narrow.status == 2 && narrow.output.contains("CAN OVERFLOW"), "\(narrow.output)")
        let outer = try runA2Q(["verify", export, "--layer-accumulator-bits", "conv2.outer=\(outerPMin - 1)", "--json"])
        #expect(outer.status == 2, "\(outer.output)")
        let outerLayers = try #require((try JSONSerialization.jsonObject(with: Data(outer.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        let outerEntry = try #require(outerLayers.first { $0["name"] as? String == "conv2" })
        #expect(outerEntry["overflow_free"] as? Bool == false && outerEntry["p_min"] as? Int == pMin)
        let unknown = try runA2Q(["verify", export, "--layer-accumulator-bits", "conv1.outer=20"])
        #expect(unknown.status == 1, "conv1 has no tiles: \(unknown.output)")
    }

    @Test("eval --integer: per-tile and outer registers in wrap, saturate and wide, counts per stage and every accumulator equal to the NumPy register model",
          arguments: ["wrap", "saturate", "wide"])
    func engineStagesAgainstNumPy(mode: String) throws {
        let export = try Self.tiledExport.get()
        let folder = (export as NSString).deletingLastPathComponent
        let bits = ["conv2=13", "conv2.outer=15", "fc1=14", "fc1.outer=18"]
        let outputs = folder + "/stages-\(mode).h5"
        let eval = try runA2Q(["eval", "--integer", export, "--overflow", mode, "--limit", "40", "--outputs", outputs, "--outputs-accumulators", "--json"]
                              + bits.flatMap { ["--layer-accumulator-bits", $0] }, timeout: 300)
        #expect(eval.status == 0, "\(eval.output)")
        let layers = try #require((try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])?["layers"] as? [[String: Any]])
        let counts = folder + "/stages-\(mode).json"
        let (status, output) = try python("integer_forward.py", [export, DataSource.defaultFolder, "40", folder + "/stages.bin",
                                                                 "--overflow", mode, "--counts", counts, "--outputs", outputs, "--bits"] + bits)
        #expect(status == 0 && output.contains("equals the reference"), "\(output)")
        let numpy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: counts))) as? [String: [String: Int]])
        for name in ["conv2", "fc1"] {
            let engine = try #require(layers.first { $0["name"] as? String == name })
            for key in ["dot_products", "tile_sums", "final_overflows", "partial_overflows", "outer_final_overflows", "outer_partial_overflows"] {
                #expect(engine[key] as? Int == numpy[name]?[key], "\(mode) \(name) \(key): engine \(engine[key] ?? "-"), NumPy \(numpy[name]?[key] ?? -1)")
            }
            #expect((engine["final_overflows"] as? Int ?? 0) > 0, "\(name): a narrow tile register must overflow: \(engine)")
        }
        let conv2 = try #require(layers.first { $0["name"] as? String == "conv2" })
        // Tile sums of ±2^12 wrap back into range; saturated and exact ones leave a 15-bit outer register.
        if mode != "wrap" { #expect((conv2["outer_final_overflows"] as? Int ?? 0) > 0, "\(conv2)") }
    }

    @Test("A file whose tile datasets or tile attribute were altered is refused, naming the dataset")
    func alteredTileViewRefused() throws {
        let export = try Self.tiledExport.get()
        let folder = (export as NSString).deletingLastPathComponent
        for (name, edit) in [("tile_acc_max", "g['tile_acc_max'][0, 0] += 1"), ("accumulator_tile", "g.attrs['accumulator_tile'] = 32")] {
            let altered = folder + "/altered-\(name).h5"
            try? FileManager.default.removeItem(atPath: altered)
            try FileManager.default.copyItem(atPath: export, toPath: altered)
            let script = "import h5py\nwith h5py.File('\(altered)', 'r+') as f:\n    g = f['layers/conv2']\n    \(edit)\n"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script]
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let verify = try runA2Q(["verify", altered])
            #expect(verify.status == 1 && verify.output.contains(name), "\(name): \(verify.output)")
        }
    }
}
