import A2QCore
import A2QNN
import A2QQuant
import Foundation
import NNKernels

/// Post-training quantization with AXE (`--init axe`, docs/AXE.md): after the conversion and the
/// activation calibration, every constrained layer in execution order gets its integers from
/// accumulator-aware GPTQ on the calibration images, given the layers before it already quantized.
extension Trainer {
    /// For each constrained layer: the activation quantizers calibrated again on the model as it
    /// now is (the layers before it already AXE's, so its inputs are what it will see; calibrated
    /// on the conversion's placeholder weights instead, scales after a tight budget are far off;
    /// once more at the end), then `H = 2·X·Xᵀ` of its quantized inputs over the calibration
    /// batches (each rank its shard of every global batch, then one all-reduce of H), AXE on the
    /// float model's weights with the layer's per-tile budget, A2Q+'s representability step, a
    /// least-squares refit of each channel's scale on H (`s = wᵀHq / qᵀHq`: the integers and the
    /// proof stay), and the exact representation in the layer's parameters. Every rank computes
    /// the same integers from the same H. Grouped convolutions keep their conversion init.
    func quantizeWithAXE(_ model: Model, floatModel: Model) throws {
        let order = sampler.order(epoch: 0)
        let batches = min(max(config.calibrationBatches, 1), sampler.batchesPerEpoch)
        var columns: [Float] = [], values: [Double] = []
        for layer in model.constrainedLayers {
            let started = monotonicSeconds()
            let quantizer = layer.quantizer
            guard let inputQuantizer = layer.inputQuantizer, let inputFormat = layer.input else {
                progress.line("axe: \(layer.name) has no input quantizer; it keeps its conversion integers")
                continue
            }
            let k = quantizer.fanIn, out = quantizer.outChannels
            let conv = layer.layer as? Conv2d
            if let conv, conv.groups > 1 {
                progress.line("axe: \(layer.name) is a grouped convolution; it keeps its conversion (ep-scaled) integers")
                continue
            }
            // Every quantizer, in order (measured on cnn-bn A2Q+ P=16 at R=2: 83.6%, against 78.8%
            // when only the quantizers from the previous layer's input up to this one's are: a
            // quantizer's calibration sees the running scales of the ones before it).
            try calibrate(model)
            // H is summed over the input *integers* (x / s_x, exact in Float64): every partial sum
            // of the dsyrk is an integer below 2^53, so H is exact whatever the order — the same
            // bits on any rank count, BLAS kernel or CPU — and scaled by s_x² once at the end.
            guard let inputScale = layer.inputScale(in: model), inputScale > 0 else {
                progress.line("axe: \(layer.name)'s input quantizer has no positive scale; it keeps its conversion integers")
                continue
            }
            let inverse = 1 / Double(inputScale)
            var hessian = HessianAccumulator(inputCount: k)
            for batch in 0..<batches {
                task.fillTraining(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                                  epoch: 0, input: input)
                guard let x = model.network.forward(input, training: false, through: inputQuantizer.name) else {
                    throw A2QError("axe: cannot run the model up to \(inputQuantizer.name), the input of \(layer.name)")
                }
                let count: Int
                if let conv {
                    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
                    let ho = (h + 2 * conv.padding - conv.kernelHeight) / conv.stride + 1
                    let wo = (w + 2 * conv.padding - conv.kernelWidth) / conv.stride + 1
                    count = n * ho * wo
                    if columns.count != k * count { columns = [Float](repeating: 0, count: k * count) }
                    a2qn_im2col(x.data, &columns, Int64(n), Int64(c), Int64(c), Int64(h), Int64(w), Int64(conv.kernelHeight),
                                Int64(conv.stride), Int64(conv.padding), Int64(ho), Int64(wo))
                    if values.count != columns.count { values = [Double](repeating: 0, count: columns.count) }
                    for i in 0..<columns.count { values[i] = (Double(columns[i]) * inverse).rounded() }
                } else {
                    count = x.shape[0]
                    if values.count != k * count { values = [Double](repeating: 0, count: k * count) }
                    for n in 0..<count { for i in 0..<k { values[i * count + n] = (Double(x.data[n * k + i]) * inverse).rounded() } }
                }
                hessian.add(inputs: values, columns: count)
            }
            var h = hessian.matrix
            try h.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            let squared = Double(inputScale) * Double(inputScale)
            for i in 0..<h.count { h[i] *= squared }

            guard let view = floatModel.parameters.view(named: "\(layer.name).weight"), view.count == out * k else {
                throw A2QError("axe: the float model has no weight \(layer.name).weight of \(out)×\(k) values")
            }
            let source = floatModel.parameters.value(view)
            let weights = (0..<(out * k)).map { Double(source[$0]) }
            let p = quantizer.spec.accumulatorBits
            let budget: TileBudget = quantizer.spec.kind == .a2qPlus ? .a2qPlus(accumulatorBits: p, input: inputFormat)
                : .a2q(accumulatorBits: p, input: inputFormat)
            let options = AccumulatorAwareGPTQOptions(weightBits: quantizer.spec.weightBits, budget: budget,
                                                      tileLength: quantizer.tileCount > 1 ? quantizer.tileLength : nil)
            // AXE's scales: the conversion's ep-scaled search (per channel, the scale whose
            // projected, rounded weights fit the float ones best under this budget), refit by
            // least squares on H with those integers (the output-scale matching of ep-scaled,
            // done on the exact H so that it is the same on any rank count).
            _ = quantizer.forward(model.parameters)
            let searched = Self.refitScales(weights: weights, integers: try quantizer.integerWeights(), hessian: h,
                                            scales: quantizer.scales.map(Double.init), outputs: out, inputs: k)
            let result: AccumulatorAwareGPTQResult
            do {
                result = try AccumulatorAwareGPTQ.quantize(weights: weights, outputs: out, inputs: k, hessian: h, scales: searched,
                                                           options: options)
            } catch {
                throw A2QError("axe: layer \(layer.name): \(error)", remedy: "use more calibration images (--calibration-batches) or --init ep-scaled")
            }
            var q = result.integers
            let adjusted = quantizer.makeRepresentable(&q)
            let scales = Self.refitScales(weights: weights, integers: q, hessian: h, scales: result.scales, outputs: out, inputs: k)
            try quantizer.setIntegerWeights(q, scales: scales.map(Float.init), model.parameters)
            let zeros = q.filter { $0 == 0 }.count
            // H's bits (FNV-1a): the same on every rank count, by construction (tested).
            var fnv: UInt64 = 0xcbf2_9ce4_8422_2325
            for value in h { fnv = (fnv ^ value.bitPattern) &* 0x100_0000_01b3 }
            metrics.write(["type": "axe", "layer": layer.name, "inputs": k, "tile": quantizer.tileLength,
                           "calibration_inputs_rank0": hessian.columnCount, "hessian_fnv1a": String(fnv, radix: 16),
                           "sparsity": Double(zeros) / Double(max(q.count, 1)), "a2q_plus_steps": adjusted,
                           "seconds": monotonicSeconds() - started])
            progress.line(String(format: "axe: %@ (K=%d%@): %d calibration inputs on this rank, sparsity %.1f%%%@, %.2f s", layer.name, k,
                                 quantizer.tileCount > 1 ? ", tiles of \(quantizer.tileLength)" : "", hessian.columnCount,
                                 100 * Double(zeros) / Double(max(q.count, 1)),
                                 adjusted > 0 ? ", \(adjusted) A2Q+ steps toward zero" : "", monotonicSeconds() - started))
        }
        try calibrate(model)
    }

    /// Per channel, the scale that best fits the float layer's output on the calibration inputs
    /// with the integers fixed: `argmin_s ‖wᵀX − s·qᵀX‖² = wᵀHq / qᵀHq` (`H = 2XXᵀ`); the AXE scale
    /// where that is not positive and finite (an all-zero channel).
    static func refitScales(weights: [Double], integers: [Int32], hessian h: [Double], scales: [Double],
                            outputs: Int, inputs k: Int) -> [Double] {
        (0..<outputs).map { c in
            var hq = [Double](repeating: 0, count: k)
            for i in 0..<k where integers[c * k + i] != 0 {
                let qi = Double(integers[c * k + i])
                for j in 0..<k { hq[j] += h[i * k + j] * qi }
            }
            var numerator = 0.0, denominator = 0.0
            for j in 0..<k {
                numerator += weights[c * k + j] * hq[j]
                denominator += Double(integers[c * k + j]) * hq[j]
            }
            let fitted = numerator / denominator
            return fitted > 0 && fitted.isFinite ? fitted : scales[c]
        }
    }
}
