import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// Start-up and conversion: initial state from rank 0, buffer averaging, the float → quantized
/// conversion (weights by name, quantizer initialisation), output-scale matching and the
/// activation calibration, each reduced over ranks so that it does not depend on R.
extension Trainer {
    // MARK: Start-up, conversion, calibration

    /// Rank 0's initial parameters and buffers go to every rank.
    func initialize(_ model: Model) throws {
        var generator = Xoshiro256(seed: config.seed)
        model.network.initialize(generator: &generator)
        if model.description.initialization == .bilinear { BilinearPath.apply(to: model) }
        try broadcastState(model)
    }

    func broadcastState(_ model: Model) throws {
        let parameters = model.parameters
        try communicator.broadcast(UnsafeMutableRawBufferPointer(start: parameters.values, count: parameters.count * 4), root: 0)
        for (_, tensor) in model.network.buffers {
            try communicator.broadcast(UnsafeMutableRawBufferPointer(start: tensor.data, count: tensor.count * 4), root: 0)
        }
    }

    /// Averages non-trainable buffers (BatchNorm running statistics) over ranks, so that
    /// evaluation and checkpoints see one model. BatchNorm itself normalises with each rank's
    /// local batch statistics during training (as PyTorch DDP does by default).
    func synchronizeBuffers(_ model: Model) throws {
        guard communicator.worldSize > 1 else { return }
        let inverse = 1 / Float(communicator.worldSize)
        for (_, tensor) in model.network.buffers {
            try communicator.allReduceSum(tensor.buffer)
            for i in 0..<tensor.count { tensor.data[i] *= inverse }
        }
    }

    /// Copies float weights, biases and BatchNorm state by name, then initialises every
    /// quantizer from its float weights (EP-init or naive for a2q/a2q+, `max|w|` for qat).
    func convert(from floatModel: Model, to model: Model) throws {
        for view in floatModel.parameters.views {
            guard let target = model.parameters.view(named: view.name), target.count == view.count else { continue }
            model.parameters.value(target).update(from: floatModel.parameters.value(view), count: view.count)
        }
        let sources = Dictionary(uniqueKeysWithValues: floatModel.network.buffers.map { ($0.name, $0.tensor) })
        for (name, tensor) in model.network.buffers {
            if let source = sources[name] { tensor.data.update(from: source.data, count: tensor.count) }
        }
        for layer in model.quantizedLayers {
            layer.quantizer.initializeFromFloatWeights(model.parameters,
                                                       method: layer.isConstrained ? config.init_ : .naive)
        }
        // Deterministic on every rank, but keep one source of truth all the same.
        try broadcastState(model)
    }

    /// Re-calibration after conversion: per output channel of every constrained layer (in
    /// order), the least-squares factor `ρ = Σ z_f·z_q / Σ z_q²` between the float model's and
    /// the quantized model's pre-bias outputs on calibration batches (reduced over ranks) scales
    /// `s`, `g` and `v` together, so the integers stay and the layer's output scale is the float
    /// model's. Without BatchNorm a tight L1 budget otherwise shrinks each layer's output and
    /// starves the next one.
    func matchOutputScales(of model: Model, to floatModel: Model) throws {
        let order = sampler.order(epoch: 0)
        let batches = min(max(config.calibrationBatches / 4, 1), sampler.batchesPerEpoch)
        for layer in model.constrainedLayers {
            let channels = layer.quantizer.outChannels
            let bias = layer.layer.hasParameters ? model.parameters.view(named: "\(layer.name).bias") : nil
            var sums = [Double](repeating: 0, count: 2 * channels)
            for batch in 0..<batches {
                task.fillTraining(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                                  epoch: 0, input: input)
                guard let reference = floatModel.network.forward(input, training: false, through: layer.name),
                      let quantized = model.network.forward(input, training: false, through: layer.name) else { continue }
                let plane = reference.count / (reference.shape[0] * channels)
                let b = bias.map { model.parameters.value($0) }
                for n in 0..<reference.shape[0] {
                    for c in 0..<channels {
                        let shift = b?[c] ?? 0
                        let offset = (n * channels + c) * plane
                        for i in 0..<plane {
                            let zf = Double(reference[offset + i] - shift), zq = Double(quantized[offset + i] - shift)
                            sums[2 * c] += zf * zq
                            sums[2 * c + 1] += zq * zq
                        }
                    }
                }
            }
            try sums.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            for c in 0..<channels where sums[2 * c + 1] > 0 && sums[2 * c] > 0 {
                layer.quantizer.rescaleChannel(c, by: sums[2 * c] / sums[2 * c + 1], model.parameters)
            }
        }
    }

    /// Sets activation-quantizer scales from the first training batches. Each batch's
    /// percentile is taken over the global batch: the maximum and a 4096-bin histogram of `|x|`
    /// are reduced over ranks (exact counts), so the result does not depend on the rank count.
    func calibrate(_ model: Model) throws {
        let quantizers = model.activationQuantizers.filter(\.hasParameters)
        guard !quantizers.isEmpty, config.calibrationBatches > 0 else { return }
        for q in quantizers { q.resetCalibration() }
        let order = sampler.order(epoch: 0)
        let bins = 4096
        var histogram = [Double](repeating: 0, count: bins)
        for batch in 0..<min(config.calibrationBatches, sampler.batchesPerEpoch) {
            task.fillTraining(sampler.slice(of: order, batch: batch, rank: communicator.rank, worldSize: communicator.worldSize),
                              epoch: 0, input: input)
            // Layer by layer: a quantizer's scale must be final before the next one sees its output.
            for q in quantizers {
                guard model.network.forward(input, training: true, through: q.name) != nil else { continue }
                var maximum = [Int64(q.lastInputMaximum().bitPattern)]  // |x| ≥ 0: bit order is value order
                try maximum.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
                let top = Float(bitPattern: UInt32(truncatingIfNeeded: maximum[0]))
                for i in 0..<bins { histogram[i] = 0 }
                q.lastInputHistogram(bins: bins, maximum: top, into: &histogram)
                try histogram.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
                q.addCalibrationSample(ActivationQuantizer.percentile(histogram: histogram, maximum: top,
                                                                      percentile: q.calibrationPercentile), model.parameters)
            }
        }
        try synchronizeBuffers(model)
    }

    func logConversion(_ model: Model, metric: Double, loss testLoss: Double) throws {
        let layers = try LayerStatistics.measure(model)
        metrics.write(["type": "conversion", "init": config.init_.rawValue, "test_\(task.metricName)": metric, "test_loss": testLoss,
                       "layers": MetricsLog.object(layers)])
        let details = layers.filter { $0.maxL1Usage != nil }.map {
            String(format: "%@ sparsity %.1f%% p_min %d", $0.name, 100 * $0.sparsity, $0.pMin ?? 0)
        }.joined(separator: ", ")
        progress.line(String(format: "converted with %@ init: test %@ %@, loss %.4f before fine-tuning (%@)",
                             config.init_.rawValue, task.metricName, task.format(metric: metric), testLoss, details))
    }
}
