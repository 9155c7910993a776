import A2QCore
import A2QQuant
import Foundation
import Testing

/// Random layers for the AXE tests: weights, correlated calibration inputs and their Hessian.
struct AXELayer {
    let outputs: Int
    let inputs: Int
    let weights: [Double]
    /// Calibration inputs `X`, row-major `[inputs, samples]`.
    let x: [Double]
    let samples: Int
    let hessian: [Double]

    /// Inputs with a shared factor and neighbour correlation (non-negative when `relu`);
    /// `deadInput` is a row of zeros (a dead input).
    init(outputs: Int, inputs: Int, samples: Int, seed: UInt64, relu: Bool = true, deadInput: Int? = nil) {
        var g = Xoshiro256(seed: seed)
        func normal() -> Double {
            let u1 = max(g.nextUnitDouble(), 1e-300), u2 = g.nextUnitDouble()
            return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
        }
        self.outputs = outputs
        self.inputs = inputs
        self.samples = samples
        // Irregular magnitudes keep rounding away from exact ties.
        weights = (0..<(outputs * inputs)).map { _ in normal() * 0.1 + 0.003 * normal() }
        var z = (0..<(inputs * samples)).map { _ in normal() }
        let shared = (0..<samples).map { _ in normal() }
        var x = [Double](repeating: 0, count: inputs * samples)
        for k in 0..<inputs {
            for n in 0..<samples {
                var v = z[k * samples + n] + 0.5 * shared[n]
                if k > 0 { v += 0.8 * z[(k - 1) * samples + n] }
                x[k * samples + n] = relu ? max(v, 0) : v
            }
        }
        if let dead = deadInput { for n in 0..<samples { x[dead * samples + n] = 0 } }
        z.removeAll()
        self.x = x
        var accumulator = HessianAccumulator(inputCount: inputs)
        // Two batches: the accumulator is meant to be run per batch.
        let half = samples / 2
        var first = [Double](), second = [Double]()
        for k in 0..<inputs {
            first += x[(k * samples)..<(k * samples + half)]
            second += x[(k * samples + half)..<((k + 1) * samples)]
        }
        accumulator.add(inputs: first, columns: half)
        accumulator.add(inputs: second, columns: samples - half)
        hessian = accumulator.matrix
    }

    /// `‖(W − diag(s)·q)·X‖_F`.
    func outputError(_ q: [Int32], scales: [Double]) -> Double {
        var total = 0.0
        for c in 0..<outputs {
            for n in 0..<samples {
                var y = 0.0
                for k in 0..<inputs { y += (weights[c * inputs + k] - scales[c] * Double(q[c * inputs + k])) * x[k * samples + n] }
                total += y * y
            }
        }
        return total.squareRoot()
    }
}

/// Runs `Tests/Python/gptq_reference.py` on folders prepared by `write`.
enum GPTQReference {
    static func write(_ layer: AXELayer, scales: [Double], options: AccumulatorAwareGPTQOptions, to folder: String) throws {
        func raw(_ values: [Double], _ name: String) throws {
            let data = values.withUnsafeBufferPointer { Data(buffer: $0) }
            try data.write(to: URL(fileURLWithPath: folder + "/" + name))
        }
        try raw(layer.weights, "weights.bin")
        try raw(layer.hessian, "hessian.bin")
        try raw(scales, "scales.bin")
        var params: [String: Any] = ["outputs": layer.outputs, "inputs": layer.inputs, "weight_bits": options.weightBits,
                                     "tile": options.tileLength ?? 0, "soft": options.softThreshold ? 1 : 0,
                                     "propagation": options.errorPropagation == .fullDifference ? "full" : "rounding",
                                     "damping": options.dampingFraction, "A": 0, "B": 0, "L": 0]
        switch options.budget {
        case .unconstrained: params["budget"] = "none"
        case let .a2qPlus(a, b): params["budget"] = "a2q+"; params["A"] = a; params["B"] = b
        case let .a2q(l): params["budget"] = "a2q"; params["L"] = l
        }
        try JSONSerialization.data(withJSONObject: params).write(to: URL(fileURLWithPath: folder + "/params.json"))
    }

    static func run(_ folders: [String]) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Python/gptq_reference.py").path
        let result = try MPIRun.runProcess("/usr/bin/env", ["python3", script] + folders, timeout: 600)
        #expect(result.status == 0, "gptq_reference.py: \(result.output) (NumPy: Launch/setup-python.sh)")
    }

    static func read(_ folder: String, count: Int) throws -> [Int32] {
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/q.bin"))
        guard data.count == count * 4 else { return [] }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }
}

@Suite("AXE: accumulator-aware GPTQ (one layer)")
struct AccumulatorAwareGPTQTests {
    static let unsigned8 = InputFormat(bits: 8, signed: false)

    @Test("HessianAccumulator: two batches give 2·X·Xᵀ (naive sum) and a symmetric matrix")
    func hessianAccumulator() {
        let layer = AXELayer(outputs: 2, inputs: 37, samples: 51, seed: 3)
        var worst = 0.0
        for i in 0..<37 {
            for j in 0..<37 {
                var naive = 0.0
                for n in 0..<51 { naive += 2 * layer.x[i * 51 + n] * layer.x[j * 51 + n] }
                worst = max(worst, abs(naive - layer.hessian[i * 37 + j]) / max(1, abs(naive)))
                #expect(layer.hessian[i * 37 + j] == layer.hessian[j * 37 + i])
            }
        }
        #expect(worst < 1e-12, "relative difference \(worst)")
    }

    @Test("same integers as the independent NumPy GPTQ/AXE (out 16, K 150, T 64 and K, M 8 and 4, A2Q+ and A2Q at binding P, both error propagations)")
    func matchesNumPy() throws {
        let layer = AXELayer(outputs: 16, inputs: 150, samples: 400, seed: 26, deadInput: 7)
        var cases: [(AccumulatorAwareGPTQOptions, String)] = []
        for (m, ps) in [(8, [16, 18]), (4, [13, 15])] {
            cases.append((AccumulatorAwareGPTQOptions(weightBits: m, budget: .unconstrained), "GPTQ M\(m)"))
            for p in ps {
                for tile in [64, nil] as [Int?] {
                    for budget in [TileBudget.a2qPlus(accumulatorBits: p, input: Self.unsigned8),
                                   TileBudget.a2q(accumulatorBits: p, input: Self.unsigned8)] {
                        cases.append((AccumulatorAwareGPTQOptions(weightBits: m, budget: budget, tileLength: tile),
                                      "M\(m) P\(p) T\(tile.map(String.init) ?? "K") \(budget)"))
                    }
                }
            }
            cases.append((AccumulatorAwareGPTQOptions(weightBits: m, budget: .a2qPlus(accumulatorBits: ps[0], input: Self.unsigned8),
                                                      tileLength: 64, errorPropagation: .fullDifference), "M\(m) full difference"))
            cases.append((AccumulatorAwareGPTQOptions(weightBits: m, budget: .a2q(accumulatorBits: ps[0], input: Self.unsigned8),
                                                      tileLength: 50, softThreshold: false), "M\(m) clamps only"))
        }
        var folders: [String] = []
        var results: [AccumulatorAwareGPTQResult] = []
        for (options, _) in cases {
            let result = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: 16, inputs: 150,
                                                           hessian: layer.hessian, options: options)
            let folder = temporaryFolder("gptq-reference")
            try GPTQReference.write(layer, scales: result.scales, options: options, to: folder)
            folders.append(folder)
            results.append(result)
        }
        try GPTQReference.run(folders)
        for ((options, name), (folder, result)) in zip(cases, zip(folders, results)) {
            let reference = try GPTQReference.read(folder, count: 16 * 150)
            let differing = zip(reference, result.integers).filter { $0 != $1 }.count
            #expect(reference.count == 16 * 150 && differing == 0, "\(name): \(differing) integers differ from NumPy")
            #expect(result.deadInputs == 1 && (0..<16).allSatisfy { result.integers[$0 * 150 + 7] == 0 })
            // The budget binds: some tile reaches its limit exactly.
            if options.budget != .unconstrained {
                var reached = false
                for c in 0..<16 {
                    for t in 0..<result.tileCount {
                        let (a, b) = result.tileSums(output: c, tile: t)
                        switch options.budget {
                        case let .a2qPlus(pa, pb): reached = reached || a == pa || b == pb
                        case let .a2q(l): reached = reached || a + b == l
                        case .unconstrained: break
                        }
                    }
                }
                #expect(reached, "\(name): no tile reaches its limit; choose a lower P")
            }
        }
    }

    @Test("every tile of every channel is within its limits and its exact worst case fits P (random shapes, T, P, N, M, both flavours)")
    func proofOnEveryTile() throws {
        var g = Xoshiro256(seed: 2409)
        for trial in 0..<60 {
            let outputs = 1 + Int(g.next() % 12), inputs = 1 + Int(g.next() % 300)
            let plus = trial % 2 == 0
            let n = 1 + Int(g.next() % 8), m = 2 + Int(g.next() % 7)
            let input = InputFormat(bits: n, signed: g.next() % 2 == 0)
            let dataType = AccumulatorBounds.dataTypeBound(fanIn: inputs, weightBits: m, input: input)
            let p = max(2, n) + Int(g.next() % UInt64(max(1, dataType - max(2, n) + 1)))
            let tile: Int? = g.next() % 3 == 0 ? nil : 1 + Int(g.next() % UInt64(inputs))
            let budget = plus ? TileBudget.a2qPlus(accumulatorBits: p, input: input) : TileBudget.a2q(accumulatorBits: p, input: input)
            let layer = AXELayer(outputs: outputs, inputs: inputs, samples: max(2, inputs / 2), seed: g.next(),
                                 relu: !input.signed, deadInput: g.next() % 4 == 0 ? Int(g.next() % UInt64(inputs)) : nil)
            let options = AccumulatorAwareGPTQOptions(weightBits: m, budget: budget, tileLength: tile,
                                                      errorPropagation: trial % 3 == 0 ? .roundingOnly : .fullDifference,
                                                      blockSize: [128, 7, 1][trial % 3])
            let result = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: outputs, inputs: inputs,
                                                           hessian: layer.hessian, options: options)
            let qmax = Int32((1 << (m - 1)) - 1)
            #expect(result.integers.allSatisfy { abs($0) <= qmax })
            let t = tile ?? inputs
            for c in 0..<outputs {
                for start in stride(from: 0, to: inputs, by: t) {
                    let q = result.integers[(c * inputs + start)..<(c * inputs + min(start + t, inputs))]
                    let alpha = q.reduce(Int64(0)) { $0 + Int64(max($1, 0)) }
                    let beta = q.reduce(Int64(0)) { $0 + Int64(max(-$1, 0)) }
                    #expect(budget.admits(positiveSum: alpha, negativeMagnitude: beta),
                            "trial \(trial): channel \(c) tile at \(start): α \(alpha) β \(beta) outside \(budget)")
                    let range = AccumulatorBounds.worstCase(q, input: input)
                    #expect(AccumulatorBounds.fits(minimum: range.minimum, maximum: range.maximum, accumulatorBits: p),
                            "trial \(trial): channel \(c) tile at \(start): [\(range.minimum), \(range.maximum)] does not fit \(p) bits (\(input))")
                }
            }
        }
    }

    @Test("limits that never bind give plain GPTQ exactly; GPTQ's output error is below round-to-nearest's on correlated inputs")
    func unboundIsGPTQ() throws {
        let layer = AXELayer(outputs: 24, inputs: 200, samples: 500, seed: 11, relu: false)
        for m in [8, 4] {
            let plain = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: 24, inputs: 200, hessian: layer.hessian,
                                                          options: AccumulatorAwareGPTQOptions(weightBits: m, budget: .unconstrained))
            let full = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: 24, inputs: 200, hessian: layer.hessian,
                                                         options: AccumulatorAwareGPTQOptions(weightBits: m, budget: .unconstrained,
                                                                                              errorPropagation: .fullDifference))
            #expect(full.integers == plain.integers, "M\(m): without a budget both error propagations are GPTQ's")
            for budget in [TileBudget.a2qPlus(positive: 1 << 40, negative: 1 << 40), .a2q(l1: 1 << 40)] {
                let loose = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: 24, inputs: 200, hessian: layer.hessian,
                                                              options: AccumulatorAwareGPTQOptions(weightBits: m, budget: budget, tileLength: 64))
                #expect(loose.integers == plain.integers, "M\(m) \(budget)")
            }
            let qmax = Double((1 << (m - 1)) - 1)
            let nearest = (0..<(24 * 200)).map { i in
                Int32(min(max((layer.weights[i] / plain.scales[i / 200]).rounded(.toNearestOrAwayFromZero), -qmax), qmax))
            }
            let gptqError = layer.outputError(plain.integers, scales: plain.scales)
            let nearestError = layer.outputError(nearest, scales: plain.scales)
            print("GPTQ M\(m): output error \(gptqError) vs round-to-nearest \(nearestError)")
            #expect(gptqError < 0.8 * nearestError, "M\(m): GPTQ \(gptqError) vs round-to-nearest \(nearestError)")
        }
    }

    @Test("at binding limits AXE's output error is below round-to-nearest under the same running clamps (A2Q+, M 8, N 8)")
    func beatsClampedRounding() throws {
        let layer = AXELayer(outputs: 32, inputs: 288, samples: 800, seed: 17)
        for (p, tile) in [(16, 64), (18, nil), (20, nil)] as [(Int, Int?)] {
            let budget = TileBudget.a2qPlus(accumulatorBits: p, input: Self.unsigned8)
            guard case let .a2qPlus(limit, _) = budget else { continue }
            var errors: [String: Double] = [:]
            var scales: [Double] = []
            for (name, propagation) in [("full", GPTQErrorPropagation.fullDifference), ("rounding-only", .roundingOnly)] {
                let result = try AccumulatorAwareGPTQ.quantize(
                    weights: layer.weights, outputs: 32, inputs: 288, hessian: layer.hessian,
                    options: AccumulatorAwareGPTQOptions(weightBits: 8, budget: budget, tileLength: tile, errorPropagation: propagation))
                errors[name] = layer.outputError(result.integers, scales: result.scales)
                scales = result.scales
            }
            // The baseline: round to nearest, then the same greedy running clamp, no threshold, no GPTQ.
            let t = tile ?? 288
            var naive = [Int32](repeating: 0, count: 32 * 288)
            for c in 0..<32 {
                var alpha: Int64 = 0, beta: Int64 = 0
                for i in 0..<288 {
                    if i % t == 0 { alpha = 0; beta = 0 }
                    let r = Int64(min(max((layer.weights[c * 288 + i] / scales[c]).rounded(.toNearestOrAwayFromZero), -127), 127))
                    let q = min(max(r, -(limit - beta)), limit - alpha)
                    if q > 0 { alpha += q } else { beta -= q }
                    naive[c * 288 + i] = Int32(q)
                }
            }
            errors["clamped rounding"] = layer.outputError(naive, scales: scales)
            print("AXE P\(p) T\(tile.map(String.init) ?? "K"): output error \(errors.sorted { $0.key < $1.key })")
            #expect((errors["full"] ?? .infinity) < (errors["clamped rounding"] ?? 0), "P\(p): \(errors)")
            #expect((errors["rounding-only"] ?? .infinity) < (errors["clamped rounding"] ?? 0), "P\(p): \(errors)")
        }
    }

    @Test("the lazy block size changes nothing: blocks of 1, 37 and 128 columns give the same integers (A2Q+ binding, T 64)")
    func blockSizes() throws {
        let layer = AXELayer(outputs: 12, inputs: 300, samples: 600, seed: 5)
        var results: [[Int32]] = []
        for block in [128, 37, 1] {
            let options = AccumulatorAwareGPTQOptions(weightBits: 8, budget: .a2qPlus(accumulatorBits: 17, input: Self.unsigned8),
                                                      tileLength: 64, blockSize: block)
            results.append(try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: 12, inputs: 300,
                                                             hessian: layer.hessian, options: options).integers)
        }
        #expect(results[1] == results[0] && results[2] == results[0])
    }

    @Test("a Hessian that is not positive definite throws with a remedy; NaN weights throw")
    func errors() {
        let k = 5
        var h = [Double](repeating: 0, count: k * k)
        for i in 0..<k { h[i * k + i] = -1 }
        let options = AccumulatorAwareGPTQOptions(weightBits: 8, budget: .unconstrained, dampingFraction: 0)
        #expect(throws: AccumulatorAwareGPTQError.self) {
            _ = try AccumulatorAwareGPTQ.quantize(weights: [Double](repeating: 0.1, count: 2 * k), outputs: 2, inputs: k,
                                                  hessian: h, options: options)
        }
        do {
            _ = try AccumulatorAwareGPTQ.quantize(weights: [Double](repeating: 0.1, count: 2 * k), outputs: 2, inputs: k,
                                                  hessian: h, options: options)
        } catch {
            #expect("\(error)".contains("not positive definite") && "\(error)".contains("damping"))
        }
        var w = [Double](repeating: 0.1, count: 2 * k)
        w[3] = .nan
        for i in 0..<k { h[i * k + i] = 1 }
        #expect(throws: AccumulatorAwareGPTQError.nonFinite(what: "weights")) {
            _ = try AccumulatorAwareGPTQ.quantize(weights: w, outputs: 2, inputs: k, hessian: h, options: options)
        }
    }

    @Test("every layer shape of resnet20 (A2Q+, P 16, T 64, M 8) in well under a few seconds on one core")
    func resnet20Speed() throws {
        // (outputs, K): conv1, stage 1 (6), stage 2 (first, 5 more, 1×1 shortcut), stage 3 (same), fc.
        var shapes = [(16, 27)] + Array(repeating: (16, 144), count: 6)
        shapes += [(32, 144)] + Array(repeating: (32, 288), count: 5) + [(32, 16)]
        shapes += [(64, 288)] + Array(repeating: (64, 576), count: 5) + [(64, 32), (10, 64)]
        var layers: [Int: AXELayer] = [:]
        for (o, k) in Set(shapes.map { [$0.0, $0.1] }).map({ ($0[0], $0[1]) }) {
            layers[o * 10_000 + k] = AXELayer(outputs: o, inputs: k, samples: 2 * k, seed: UInt64(o * k))
        }
        let options = AccumulatorAwareGPTQOptions(weightBits: 8, budget: .a2qPlus(accumulatorBits: 16, input: Self.unsigned8), tileLength: 64)
        var largest = 0.0
        let start = Date()
        for (o, k) in shapes {
            guard let layer = layers[o * 10_000 + k] else { continue }
            let t0 = Date()
            _ = try AccumulatorAwareGPTQ.quantize(weights: layer.weights, outputs: o, inputs: k, hessian: layer.hessian, options: options)
            if o == 64 && k == 576 { largest = max(largest, Date().timeIntervalSince(t0)) }
        }
        let total = Date().timeIntervalSince(start)
        print("AXE timing: 64×576 layer \(String(format: "%.4f", largest)) s; all \(shapes.count) resnet20 layers \(String(format: "%.4f", total)) s")
        #expect(total < 3, "resnet20's layers took \(total) s")
    }
}
