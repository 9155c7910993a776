import Foundation
import A2QCore
import A2QNN
import A2QQuant

/// One line of a benchmark table.
public struct BenchmarkRow: Sendable, Codable {
    public var name: String
    /// Median seconds per iteration.
    public var medianSeconds: Double
    /// Best seconds per iteration.
    public var bestSeconds: Double
    /// GFLOP/s at the median (0 when not a FLOP benchmark).
    public var gflops: Double
    public var note: String
}

/// Layer-level benchmarks: the hidden conv of the Fashion-MNIST CNN against plain sgemm,
/// and the A2Q/A2Q+ quantizer cost against fc1's matrix multiplications.
public enum LayerBenchmark {
    /// Runs every layer benchmark with `repeats` timed iterations each.
    public static func run(repeats: Int = 20) throws -> [BenchmarkRow] {
        var rows: [BenchmarkRow] = []
        rows += try convolution(repeats: repeats)
        rows += try quantizerOverhead(repeats: repeats)
        return rows
    }

    static func row(_ name: String, _ times: [Double], flops: Double, note: String = "") -> BenchmarkRow {
        let median = times[times.count / 2]
        return BenchmarkRow(name: name, medianSeconds: median, bestSeconds: times[0],
                            gflops: flops > 0 ? flops / median / 1e9 : 0, note: note)
    }

    /// Conv2d 32→64, 3×3, pad 1 on [64, 32, 14, 14]: forward + backward with each backend
    /// (oneDNN's primitives, im2col + sgemm) vs the same three products as plain sgemms.
    static func convolution(repeats: Int) throws -> [BenchmarkRow] {
        let (n, cIn, cOut, h, w, k) = (64, 32, 64, 14, 14, 3)
        var g = Xoshiro256(seed: 1)
        let x = Tensor(shape: [n, cIn, h, w])
        for i in 0..<x.count { x[i] = g.uniform(-1, 1) }
        let dy = Tensor(shape: [n, cOut, h, w])
        for i in 0..<dy.count { dy[i] = g.uniform(-1, 1) }
        let kk = cIn * k * k, columns = n * h * w
        let flops = 3 * 2 * Double(cOut) * Double(kk) * Double(columns)
        var layers: [(backend: Conv2d.Backend, row: BenchmarkRow)] = []
        for backend in [Conv2d.Backend.onednn, .im2col] {
            var layout = ParameterLayout()
            let conv = try Conv2d(name: "conv2", inChannels: cIn, outChannels: cOut, kernelSize: k, padding: 1,
                                  backend: backend, layout: &layout)
            let store = ParameterStore(layout: layout)
            var generator = Xoshiro256(seed: 1)
            conv.initialize(store, generator: &generator)
            let times = measure(repeats: repeats) {
                _ = conv.forward(x, parameters: store, training: true)
                _ = conv.backward(dy, parameters: store)
            }
            layers.append((backend, row("conv2d fwd+bwd [64,32,14,14] 3x3 p1 → 64, \(backend.rawValue)", times, flops: flops,
                                        note: conv.implementation)))
        }
        // The same three products as raw sgemm calls on preallocated matrices.
        let a = Tensor(shape: [cOut, kk]), b = Tensor(shape: [kk, columns]), c = Tensor(shape: [cOut, columns])
        let dw = Tensor(shape: [cOut, kk]), dcol = Tensor(shape: [kk, columns])
        for t in [a, b, c] { for i in 0..<t.count { t[i] = g.uniform(-1, 1) } }
        let gemmTimes = measure(repeats: repeats) {
            BLAS.gemm(transposeA: false, transposeB: false, m: cOut, n: columns, k: kk,
                      a: a.data, lda: kk, b: b.data, ldb: columns, beta: 0, c: c.data, ldc: columns)
            BLAS.gemm(transposeA: false, transposeB: true, m: cOut, n: kk, k: columns,
                      a: c.data, lda: columns, b: b.data, ldb: columns, beta: 0, c: dw.data, ldc: kk)
            BLAS.gemm(transposeA: true, transposeB: false, m: kk, n: columns, k: cOut,
                      a: a.data, lda: kk, b: c.data, ldb: columns, beta: 0, c: dcol.data, ldc: columns)
        }
        let gemm = row("sgemm, same 3 products", gemmTimes, flops: flops)
        var rows = layers.map(\.row) + [gemm]
        for (backend, layer) in layers {
            var ratio = layer
            ratio.name = "conv2d (\(backend.rawValue)) / sgemm rate"
            ratio.note = String(format: "%.0f%%", 100 * layer.gflops / gemm.gflops)
            ratio.gflops = 0
            rows.append(ratio)
        }
        return rows
    }

    /// fc1 (3136 → 128) at batch 64: quantizer forward + backward vs the layer's matmuls.
    static func quantizerOverhead(repeats: Int) throws -> [BenchmarkRow] {
        let (batch, inputs, outputs) = (64, 3136, 128)
        var rows: [BenchmarkRow] = []
        var g = Xoshiro256(seed: 2)
        let x = Tensor(shape: [batch, inputs])
        for i in 0..<x.count { x[i] = g.uniform(0, 1) }
        let dy = Tensor(shape: [batch, outputs])
        for i in 0..<dy.count { dy[i] = g.uniform(-1, 1) }
        var matmul = 0.0
        for kind in [WeightQuantizerKind.float, .qat, .a2q, .a2qPlus] {
            var layout = ParameterLayout()
            let spec = WeightQuantizerSpec(kind: kind, weightBits: 8, accumulatorBits: 20)
            let fc = try Linear(name: "fc1", inputs: inputs, outputs: outputs, quantizer: spec,
                                input: InputFormat(bits: 8, signed: false), layout: &layout)
            let store = ParameterStore(layout: layout)
            fc.initialize(store, generator: &g)
            let layerTimes = measure(repeats: repeats) {
                _ = fc.forward(x, parameters: store, training: true)
                _ = fc.backward(dy, parameters: store)
            }
            // The quantizer's backward turns the layer's ∂L/∂w_q into ∂L/∂v in place: restore
            // the GEMM's output (untimed) before every repeat.
            let weightGradient = store.gradient(fc.weight)
            let saved = Array(UnsafeBufferPointer(start: weightGradient, count: fc.weight.count))
            let restore = { weightGradient.update(from: saved, count: saved.count) }
            let quantizerTimes = measure(repeats: repeats, setup: restore) {
                _ = fc.quantizer.forward(store)
                fc.quantizer.backward(store)
            }
            let flops = 3 * 2 * Double(batch * inputs * outputs)
            var layer = row("linear 3136→128 b64 fwd+bwd (\(kind.rawValue))", layerTimes, flops: flops)
            if kind == .float { matmul = layer.medianSeconds; rows.append(layer); continue }
            layer.note = String(format: "+%.1f%% over float", 100 * (layer.medianSeconds / matmul - 1))
            rows.append(layer)
            let forwardTimes = measure(repeats: repeats) { _ = fc.quantizer.forward(store) }
            var q = row("  \(kind.rawValue) quantizer fwd+bwd alone", quantizerTimes, flops: 0)
            var f = row("  \(kind.rawValue) quantizer fwd alone", forwardTimes, flops: 0)
            f.note = String(format: "%.1f%%", 100 * f.medianSeconds / matmul)
            rows.append(f)
            q.note = String(format: "%.1f%% of the float layer's matmuls", 100 * q.medianSeconds / matmul)
            rows.append(q)
        }
        return rows
    }

    /// A fixed-width table of rows.
    public static func format(_ rows: [BenchmarkRow]) -> String {
        func column(_ text: String, _ width: Int, right: Bool = false) -> String {
            let padding = String(repeating: " ", count: max(width - text.count, 0))
            return right ? padding + text : text + padding
        }
        var lines = [column("benchmark", 48) + column("median ms", 11, right: true) + column("best ms", 10, right: true)
                     + column("GFLOP/s", 9, right: true) + "  note"]
        for r in rows {
            let median = r.medianSeconds > 0 ? String(format: "%.3f", r.medianSeconds * 1e3) : ""
            let best = r.bestSeconds > 0 ? String(format: "%.3f", r.bestSeconds * 1e3) : ""
            let rate = r.gflops > 0 ? String(format: "%.1f", r.gflops) : ""
            lines.append(column(r.name, 48) + column(median, 11, right: true) + column(best, 10, right: true)
                         + column(rate, 9, right: true) + "  " + r.note)
        }
        return lines.joined(separator: "\n")
    }
}
