import A2QCheckpoint
import A2QCore
import A2QNN
import A2QQuant
import Foundation

/// Schema v1 of a2q's HDF5 checkpoints (documented in docs/CHECKPOINT.md).
public enum CheckpointFile {
    public static let format = "a2q-checkpoint"
    public static let formatVersion = 1

    /// What a checkpoint holds besides the tensors.
    public struct Header: Sendable {
        public var path: String
        public var config: TrainConfig
        public var state: TrainingState
        public var worldSize: Int
        public var layerNames: [String]
    }

    /// Splits `conv1.weight_log2_scale` into (`conv1`, `weight_log2_scale`).
    static func split(_ name: String) -> (group: String, dataset: String) {
        guard let dot = name.firstIndex(of: ".") else { return ("", name) }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    // MARK: Save

    /// Writes a checkpoint atomically: `path.tmp`, flush, fsync, rename, fsync the folder.
    /// Never leaves a file named `path` that is incomplete.
    ///
    /// `state.window` / `state.epochTotals` hold every rank's local sums (rank-major) and
    /// `rankBuffers` every rank's copy of each buffer (`[R, n]`), so that a resume with the same
    /// rank count restores each rank exactly; `/model` holds the rank average of the buffers.
    public static func save(path: String, model: Model, optimizer: (any Optimizer)?, state: TrainingState,
                            config: TrainConfig, worldSize: Int, rankBuffers: [String: [Float]] = [:]) throws {
        let temporary = path + ".tmp"
        do {
            let file = try HDF5File.create(temporary)
            try writeRoot(file, model: model, state: state, config: config, worldSize: worldSize)
            try writeModel(file, model: model)
            try writeOptimizer(file, optimizer: optimizer, parameters: model.parameters)
            let rng = try file.createGroup("rng")
            try rng.setAttribute("seed", Int(bitPattern: UInt(config.seed)))
            try rng.setAttribute("note", "every random stream is derived from the seed: initialisation from Xoshiro256(seed), each epoch's order from (seed, epoch); no generator carries state between steps")
            let data = try file.createGroup("data")
            try data.setAttribute("epoch", state.epoch)
            try data.setAttribute("position", state.position)
            try data.setAttribute("global_batch", config.batchSize)
            try data.write("window", state.window, shape: [state.window.count])
            try data.write("epoch_totals", state.epochTotals, shape: [state.epochTotals.count])
            let perRank = try data.createGroup("rank_buffers")
            for (name, rows) in rankBuffers.sorted(by: { $0.key < $1.key }) {
                try perRank.write(name, rows, shape: [worldSize, rows.count / max(worldSize, 1)])
            }
            try file.flush()
            try file.close()
            try FileSystem.commit(temporary: temporary, to: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw A2QError("cannot save checkpoint \(path): \(error)", remedy: "free disk space or choose another --out; earlier checkpoints are intact")
        }
    }

    static func writeRoot(_ file: HDF5File, model: Model, state: TrainingState, config: TrainConfig, worldSize: Int) throws {
        try file.setAttribute("format", format)
        try file.setAttribute("format_version", formatVersion)
        try file.setAttribute("software_version", "a2q \(a2qVersion)")
        try file.setAttribute("model", config.model.rawValue)
        try file.setAttribute("phase", state.phase)
        try file.setAttribute("step", state.step)
        try file.setAttribute("global_step", state.globalStep)
        try file.setAttribute("earlier_steps", state.earlierSteps)
        try file.setAttribute("epoch", state.epoch)
        try file.setAttribute("position", state.position)
        try file.setAttribute("world_size", worldSize)
        try file.setAttribute("seed", Int(bitPattern: UInt(config.seed)))
        try file.setAttribute("config", config.json(pretty: false))
        try file.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        let names = model.network.layers.map(\.name)
        try file.setAttribute("layers", String(decoding: try JSONEncoder().encode(names), as: UTF8.self))
        if let accuracy = state.floatTestAccuracy { try file.setAttribute("float_test_accuracy", accuracy) }
        if let accuracy = state.conversionTestAccuracy { try file.setAttribute("conversion_test_accuracy", accuracy) }
    }

    static func writeModel(_ file: HDF5File, model: Model) throws {
        let root = try file.createGroup("model")
        var groups: [String: HDF5Group] = [:]
        func group(_ name: String) throws -> HDF5Group {
            if let g = groups[name] { return g }
            let g = try root.createGroup(name)
            groups[name] = g
            return g
        }
        let parameters = model.parameters
        for view in parameters.views {
            let (g, d) = split(view.name)
            let values = Array(UnsafeBufferPointer(start: parameters.value(view), count: view.count))
            try group(g).write(d, values, shape: view.shape)
        }
        for (name, tensor) in model.network.buffers {
            let (g, d) = split(name)
            try group(g).write(d, tensor.array, shape: tensor.shape)
        }
        for layer in model.quantizedLayers where !layer.quantizer.isIdentity {
            try writeQuantizedLayer(try group(layer.name), layer: layer, model: model)
        }
    }

    /// The integer view of one quantized layer with its accumulator metadata.
    static func writeQuantizedLayer(_ g: HDF5Group, layer: QuantizedLayer, model: Model) throws {
        let quantizer = layer.quantizer
        guard let input = layer.input else { return }
        _ = quantizer.forward(model.parameters)
        let report = LayerAccumulatorReport(integers: quantizer.integerWeights(), outChannels: quantizer.outChannels,
                                            input: input, accumulatorBits: quantizer.spec.accumulatorBits)
        try report.write(to: g, shape: layer.weightShape, weightBits: quantizer.spec.weightBits)
        try g.write("weight_scale", quantizer.scales, shape: [quantizer.outChannels])
        try g.setAttribute("quantizer", quantizer.spec.kind.rawValue)
        try g.setAttribute("weight_bits", quantizer.spec.weightBits)
        try g.setAttribute("input_bits", input.bits)
        try g.setAttribute("input_signed", input.signed ? 1 : 0)
        try g.setAttribute("input_scale", Double(inputScale(of: layer, in: model)))
        try g.setAttribute("accumulator_bits", quantizer.spec.accumulatorBits)
        try g.setAttribute("l1_bound", quantizer.bound.isFinite ? quantizer.bound : -1)
        try g.setAttribute("rounding", quantizer.spec.kind.isAccumulatorAware ? "toward_zero" : "nearest")
        try g.setAttribute("narrow_range", 1)
        try g.setAttribute("sparsity", report.sparsity)
        try g.setAttribute("overflow_free", report.overflowFree ? 1 : 0)
    }

    /// The scale of the activation quantizer feeding `layer` (the last one before it).
    static func inputScale(of layer: QuantizedLayer, in model: Model) -> Float {
        guard let index = model.network.index(of: layer.name) else { return 0 }
        for candidate in model.network.layers[..<index].reversed() {
            if let q = candidate as? ActivationQuantizer { return q.scale(model.parameters) }
        }
        return 0
    }

    static func writeOptimizer(_ file: HDF5File, optimizer: (any Optimizer)?, parameters: ParameterStore) throws {
        let g = try file.createGroup("optimizer")
        guard let optimizer else { try g.setAttribute("kind", "none"); return }
        try g.setAttribute("kind", String(describing: type(of: optimizer)))
        try g.setAttribute("step_count", optimizer.stepCount)
        for (name, buffer) in optimizer.stateBuffers {
            let state = try g.createGroup(name)
            for view in parameters.views {
                try state.write(view.name, Array(buffer[view.range]), shape: view.shape)
            }
        }
    }

    // MARK: Load

    /// Opens `path` and reads its header, checking the format and version.
    public static func header(_ path: String) throws -> Header {
        let file = try HDF5File.openForReading(path)
        guard file.hasAttribute("format"), (try? file.stringAttribute("format")) == format else {
            throw A2QError("\(path) is not an a2q checkpoint (no format=\"\(format)\" attribute)",
                           remedy: "pass a file written by `a2q train`")
        }
        let version = try file.intAttribute("format_version")
        guard version == formatVersion else {
            throw A2QError("\(path) has checkpoint format_version \(version); this a2q (\(a2qVersion)) reads version \(formatVersion)",
                           remedy: "use the a2q version that wrote it")
        }
        let configText = try file.stringAttribute("config")
        let config: TrainConfig
        do { config = try JSONDecoder().decode(TrainConfig.self, from: Data(configText.utf8)) } catch {
            throw A2QError("\(path): the stored configuration is not readable (\(error))")
        }
        var state = TrainingState(phase: try file.stringAttribute("phase"))
        state.step = try file.intAttribute("step")
        state.earlierSteps = try file.intAttribute("earlier_steps")
        state.epoch = try file.intAttribute("epoch")
        state.position = try file.intAttribute("position")
        if file.hasAttribute("float_test_accuracy") { state.floatTestAccuracy = try file.doubleAttribute("float_test_accuracy") }
        if file.hasAttribute("conversion_test_accuracy") { state.conversionTestAccuracy = try file.doubleAttribute("conversion_test_accuracy") }
        let data = try file.openGroup("data")
        state.window = try data.read("window", as: Double.self).values
        state.epochTotals = try data.read("epoch_totals", as: Double.self).values
        let layers = (try? JSONDecoder().decode([String].self, from: Data(try file.stringAttribute("layers").utf8))) ?? []
        return Header(path: path, config: config, state: state, worldSize: try file.intAttribute("world_size"), layerNames: layers)
    }

    /// Reads every dataset once (checksums verified) without keeping them: a full validation.
    public static func validate(_ path: String) throws -> Header {
        let header = try header(path)
        let file = try HDF5File.openForReading(path)
        func walk(_ group: HDF5Group) throws {
            for name in try group.childNames() {
                if let info = try? group.datasetInfo(name) {
                    switch info.type {
                    case .int8, .int16, .int32, .int64, .uint8, .uint64: _ = try group.read(name, as: Int64.self)
                    default: _ = try group.read(name, as: Double.self)
                    }
                } else {
                    try walk(try group.openGroup(name))
                }
            }
        }
        try walk(file)
        return header
    }

    /// Every rank's copy of each buffer (`name → [R·n]`), as saved.
    public static func rankBuffers(_ path: String) throws -> [String: [Float]] {
        let file = try HDF5File.openForReading(path)
        let group = try file.openGroup("data").openGroup("rank_buffers")
        var out: [String: [Float]] = [:]
        for name in try group.childNames() { out[name] = try group.read(name, as: Float.self).values }
        return out
    }

    /// Loads parameters, buffers and (if given) optimizer state into objects of the same layout.
    public static func restore(_ path: String, into model: Model, optimizer: (any Optimizer)?) throws {
        let file = try HDF5File.openForReading(path)
        let root = try file.openGroup("model")
        let parameters = model.parameters
        for view in parameters.views {
            let (g, d) = split(view.name)
            let (values, shape) = try read(root, g, d, path: path)
            guard shape == view.shape else {
                throw A2QError("\(path): /model/\(g)/\(d) has shape \(describe(shape)), this model needs \(describe(view.shape))",
                               remedy: "the checkpoint is of a different model or bit-width configuration")
            }
            for (i, v) in values.enumerated() { parameters.value(view)[i] = v }
        }
        for (name, tensor) in model.network.buffers {
            let (g, d) = split(name)
            let (values, shape) = try read(root, g, d, path: path)
            guard shape == tensor.shape else { throw A2QError("\(path): /model/\(g)/\(d) has the wrong shape \(describe(shape))") }
            for (i, v) in values.enumerated() { tensor.data[i] = v }
        }
        guard let optimizer else { return }
        let g = try file.openGroup("optimizer")
        optimizer.stepCount = try g.intAttribute("step_count")
        for (name, buffer) in optimizer.stateBuffers {
            let state = try g.openGroup(name)
            for view in parameters.views {
                let (values, _) = try state.read(view.name, as: Float.self)
                guard values.count == view.count else { throw A2QError("\(path): optimizer state \(name)/\(view.name) has the wrong size") }
                for (i, v) in values.enumerated() { buffer[view.offset + i] = v }
            }
        }
    }

    static func read(_ root: HDF5Group, _ group: String, _ dataset: String, path: String) throws -> ([Float], [Int]) {
        guard root.contains(group) else {
            throw A2QError("\(path): no /model/\(group) group", remedy: "the checkpoint is of a different model")
        }
        let g = try root.openGroup(group)
        guard g.contains(dataset) else {
            throw A2QError("\(path): no /model/\(group)/\(dataset)", remedy: "the checkpoint is of a different model or quantizer")
        }
        let (values, shape) = try g.read(dataset, as: Float.self)
        return (values, shape)
    }

    /// Loads the float tensors (weights, biases, BatchNorm) whose names `model` also has, for
    /// `--init-from`; quantizer parameters are left to the conversion.
    public static func loadWeights(_ path: String, into model: Model) throws -> Int {
        let file = try HDF5File.openForReading(path)
        let root = try file.openGroup("model")
        var loaded = 0
        for view in model.parameters.views where view.role == .weight || view.role == .bias || view.role == .normalization {
            let (g, d) = split(view.name)
            let (values, shape) = try read(root, g, d, path: path)
            guard shape == view.shape else {
                throw A2QError("\(path): /model/\(g)/\(d) has shape \(describe(shape)), this model needs \(describe(view.shape))",
                               remedy: "--init-from needs a checkpoint of the same --model")
            }
            for (i, v) in values.enumerated() { model.parameters.value(view)[i] = v }
            loaded += 1
        }
        for (name, tensor) in model.network.buffers {
            let (g, d) = split(name)
            let (values, _) = try read(root, g, d, path: path)
            for (i, v) in values.prefix(tensor.count).enumerated() { tensor.data[i] = v }
        }
        return loaded
    }
}
