import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import A2QNN
import A2QQuant
import Foundation

/// Schema v3 of a2q's HDF5 checkpoints (documented in docs/CHECKPOINT.md; v3 adds tiled
/// layers, multi-stage accumulation); v2 and v1 files (chains of the built-in mlp/cnn/cnn-bn
/// on 1×28×28 images) still load.
public enum CheckpointFile {
    public static let format = "a2q-checkpoint"
    public static let formatVersion = 3
    /// The versions this a2q reads.
    public static let readableVersions = 1...3

    /// What a checkpoint holds besides the tensors.
    public struct Header: Sendable {
        public var path: String
        public var config: TrainConfig
        public var state: TrainingState
        public var worldSize: Int
        public var layerNames: [String]
        /// The model's tree (v2: stored in the file; v1: the built-in the config names).
        public var description: ModelDescription
        /// `[channels, height, width]` of the images the model takes (v1: 1×28×28).
        public var inputShape: [Int]

        /// The model this checkpoint holds, built empty (float or quantized as saved).
        public func buildModel() throws -> Model {
            try ModelBuilder.build(config, quantized: state.phase != .float, classes: description.declaredClasses ?? 10,
                                   inputShape: inputShape, description: description)
        }
    }

    /// Splits a tensor name at its last dot: `stage2.block1.conv1.weight_log2_scale` into the
    /// layer's group `stage2.block1.conv1` and the dataset `weight_log2_scale`.
    static func split(_ name: String) -> (group: String, dataset: String) {
        guard let dot = name.lastIndex(of: ".") else { return ("", name) }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    // MARK: Save

    /// Writes a checkpoint atomically: `path.tmp`, flush, fsync, rename, fsync the folder.
    /// Never leaves a file named `path` that is incomplete.
    ///
    /// `state.window` / `state.epochTotals` hold every rank's local sums (rank-major) and
    /// `rankBuffers` every rank's copy of each buffer (`[R, n]`), so that a resume with the same
    /// rank count restores each rank exactly; `/model` holds the rank average of the buffers.
    /// `annotate` may add groups of its own (an import's `/import`) before the file is committed.
    public static func save(path: String, model: Model, optimizer: (any Optimizer)?, state: TrainingState,
                            config: TrainConfig, worldSize: Int, rankBuffers: [String: [Float]] = [:],
                            annotate: ((HDF5File) throws -> Void)? = nil) throws {
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
            try annotate?(file)
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
        try file.setAttribute("phase", state.phase.rawValue)
        try file.setAttribute("step", state.step)
        try file.setAttribute("global_step", state.globalStep)
        try file.setAttribute("earlier_steps", state.earlierSteps)
        try file.setAttribute("epoch", state.epoch)
        try file.setAttribute("position", state.position)
        try file.setAttribute("world_size", worldSize)
        try file.setAttribute("seed", Int(bitPattern: UInt(config.seed)))
        try file.setAttribute("config", config.json(pretty: false))
        try file.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        let names = model.network.leaves.map(\.name)
        try file.setAttribute("layers", String(decoding: try JSONEncoder().encode(names), as: UTF8.self))
        try file.setAttribute("model_description", model.description.json())
        try file.write("input_shape", model.inputShape.map(Int64.init), shape: [model.inputShape.count])
        // The task's metric under its own name: test accuracy (a fraction) or PSNR (dB).
        let metric = model.description.task.metricName
        if let value = state.floatTestAccuracy { try file.setAttribute("float_test_\(metric)", value) }
        if let value = state.conversionTestAccuracy { try file.setAttribute("conversion_test_\(metric)", value) }
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
        guard let input = layer.input else { return }
        let view = try layer.integerView(in: model, input: input, inputScale: layer.inputScale(in: model) ?? 0)
        try view.writeIntegerView(to: g)
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

    /// The largest rank count a checkpoint may declare.
    static let maxWorldSize = 1 << 16
    /// Steps, epochs and positions beyond this are refused as damaged (2^40).
    static let maxCount = 1 << 40
    /// Optimizer state that cannot be negative (Adam's second moments: a negative one would
    /// make the next update NaN).
    static let nonNegativeOptimizerState: Set<String> = ["exp_avg_sq"]

    /// One optimizer state tensor, shape-checked, finite and (where required) not negative.
    static func optimizerState(_ group: HDF5Group, _ name: String, _ view: ParameterView, path: String) throws -> [Float] {
        let values = try finite(group.read(view.name, as: Float.self, shape: view.shape.map { $0 }).values, "/optimizer/\(name)/\(view.name)", path)
        if nonNegativeOptimizerState.contains(name), values.contains(where: { $0 < 0 }) {
            throw A2QError("\(path): /optimizer/\(name)/\(view.name) holds a negative value", remedy: "the file is damaged or was altered; use another checkpoint")
        }
        return values
    }

    /// Opens `path` and reads its header: the format and version, every counter range-checked,
    /// the stored configuration decoded and validated, and the logging sums shaped `[3·R]` and
    /// `[2·R]` for the stored rank count R.
    public static func header(_ path: String) throws -> Header {
        let file = try HDF5File.openForReading(path)
        guard file.hasAttribute("format"), (try? file.stringAttribute("format")) == format else {
            throw A2QError("\(path) is not an a2q checkpoint (no format=\"\(format)\" attribute)",
                           remedy: "pass a file written by `a2q train`")
        }
        let version = try file.intAttribute("format_version")
        guard readableVersions.contains(version) else {
            throw A2QError("\(path) has checkpoint format_version \(version); this a2q (\(a2qVersion)) reads versions \(readableVersions.lowerBound)...\(readableVersions.upperBound)",
                           remedy: "use the a2q version that wrote it")
        }
        let configText = try file.stringAttribute("config")
        let config: TrainConfig
        do { config = try JSONDecoder().decode(TrainConfig.self, from: Data(configText.utf8)) } catch {
            throw A2QError("\(path): the stored configuration is not readable (\(error))", remedy: "the file is damaged or was altered")
        }
        do { try config.validate() } catch {
            throw A2QError("\(path): the stored configuration is invalid: \(error)", remedy: "the file is damaged or was altered")
        }
        let phaseName = try file.stringAttribute("phase")
        guard let phase = TrainingPhase(rawValue: phaseName) else {
            throw A2QError("\(path): unknown phase '\(phaseName)' (expected float or quantized)")
        }
        var state = TrainingState(phase: phase)
        state.step = try file.intAttribute("step", in: 0...maxCount)
        state.earlierSteps = try file.intAttribute("earlier_steps", in: 0...maxCount)
        state.epoch = try file.intAttribute("epoch", in: 0...maxCount)
        state.position = try file.intAttribute("position", in: 0...maxCount)
        let globalStep = try file.intAttribute("global_step", in: 0...(2 * maxCount))
        guard globalStep == state.globalStep else {
            throw A2QError("\(path): global_step \(globalStep) is not earlier_steps + step = \(state.globalStep)", remedy: altered)
        }
        for stage in ["float", "conversion"] {
            for (metric, range, what) in [("accuracy", 0.0...1.0, "a fraction in 0...1"), ("psnr", 0.0...PSNR.maximumDecibels, "a PSNR in 0...100 dB")] {
                let name = "\(stage)_test_\(metric)"
                guard file.hasAttribute(name) else { continue }
                let value = try file.finiteAttribute(name)
                guard range.contains(value) else { throw A2QError("\(path): \(name) = \(value) is not \(what)", remedy: altered) }
                if stage == "float" { state.floatTestAccuracy = value } else { state.conversionTestAccuracy = value }
            }
        }
        let worldSize = try file.intAttribute("world_size", in: 1...maxWorldSize)
        let modelName = try file.stringAttribute("model")
        guard modelName == config.model.rawValue else {
            throw A2QError("\(path): the model attribute '\(modelName)' is not the stored configuration's model '\(config.model.rawValue)'", remedy: altered)
        }
        let seed = Int(bitPattern: UInt(config.seed))
        for (group, name) in [(file as HDF5Group, "seed"), (try file.openGroup("rng"), "seed")] {
            let stored = try group.intAttribute(name)
            guard stored == seed else {
                throw A2QError("\(path): \(group.groupPath == "/" ? "" : group.groupPath)@\(name) = \(stored) is not the stored configuration's seed \(seed)", remedy: altered)
            }
        }
        let data = try file.openGroup("data")
        for (name, expected) in [("epoch", state.epoch), ("position", state.position), ("global_batch", config.batchSize)] {
            let stored = try data.intAttribute(name)
            guard stored == expected else {
                throw A2QError("\(path): /data@\(name) = \(stored), but the checkpoint's \(name == "global_batch" ? "configured batch size" : name) is \(expected)", remedy: altered)
            }
        }
        state.window = try loggingRows(data, "window", width: 3, worldSize: worldSize, path: path)
        state.epochTotals = try loggingRows(data, "epoch_totals", width: 2, worldSize: worldSize, path: path)
        let layerText = try file.stringAttribute("layers")
        guard let layers = try? JSONDecoder().decode([String].self, from: Data(layerText.utf8)) else {
            throw A2QError("\(path): the layers attribute is not a JSON list of layer names", remedy: altered)
        }
        let description: ModelDescription, inputShape: [Int]
        if version >= 2 {
            description = try ModelDescription.decode(Data(try file.stringAttribute("model_description").utf8),
                                                      source: "\(path):model_description")
            inputShape = try file.read("input_shape", as: Int64.self, shape: [3]).values.map { Int($0) }
            guard inputShape.allSatisfy({ (1...4096).contains($0) }) else {
                throw A2QError("\(path): input_shape \(describe(inputShape)) is not an image shape", remedy: "the file is damaged or was altered")
            }
        } else {
            guard let builtIn = BuiltInModels.description(config.model) else {
                throw A2QError("\(path): a version-1 checkpoint of the unknown model '\(config.model)'")
            }
            description = builtIn
            inputShape = ModelBuilder.defaultInputShape
        }
        return Header(path: path, config: config, state: state, worldSize: worldSize, layerNames: layers,
                      description: description, inputShape: inputShape)
    }

    /// The remedy for a value that a2q never writes.
    static let altered = "the file is damaged or was altered; use another copy of the checkpoint"

    static func finite<T: BinaryFloatingPoint>(_ values: [T], _ name: String, _ path: String) throws -> [T] {
        guard values.allSatisfy(\.isFinite) else {
            throw A2QError("\(path): \(name) holds a non-finite value", remedy: "the file is damaged or was altered; use another checkpoint")
        }
        return values
    }

    /// Everything `restore` would check, without keeping anything: the header, then every
    /// tensor of the model the stored configuration describes (shape, type, finite values,
    /// checksums), the optimizer state for every parameter, and each rank's buffer copies.
    /// `--resume auto` skips a file that fails this.
    public static func validate(_ path: String) throws -> Header {
        let header = try header(path)
        let model = try header.buildModel()
        try restore(path, into: model, optimizer: nil)
        let file = try HDF5File.openForReading(path)
        let optimizer = try file.openGroup("optimizer")
        let kind = try optimizer.stringAttribute("kind")
        let expected = optimizerKinds[header.config.optimizer] ?? ("", [])
        let groups = try optimizer.childNames()
        guard kind == "none" ? groups.isEmpty : kind == expected.kind && Set(groups) == Set(expected.buffers) else {
            throw A2QError("\(path): /optimizer is of kind '\(kind)' with state \(groups), but the stored configuration's optimizer \(header.config.optimizer.rawValue) keeps \(expected.kind) state \(expected.buffers) (or kind 'none' without state)",
                           remedy: altered)
        }
        if kind != "none" {
            _ = try optimizer.intAttribute("step_count", in: 0...maxCount)
            for name in groups {
                let state = try optimizer.openGroup(name)
                for view in model.parameters.views { _ = try optimizerState(state, name, view, path: path) }
            }
        }
        _ = try rankBuffers(path, model: model, worldSize: header.worldSize)
        return header
    }

    /// The optimizer class a configuration trains with (`/optimizer@kind`) and its state buffers.
    static let optimizerKinds: [OptimizerName: (kind: String, buffers: [String])] = [
        .sgd: ("SGD", ["momentum"]), .adam: ("Adam", ["exp_avg", "exp_avg_sq"]), .adamw: ("Adam", ["exp_avg", "exp_avg_sq"]),
    ]

    /// A logging-sum dataset of `width` values per rank: every rank's row in periodic
    /// checkpoints (`[width · R]`), or one row in files rank 0 writes alone (`final.h5`,
    /// `float.h5`: `[width]`). The shape is checked before anything is read.
    static func loggingRows(_ data: HDF5Group, _ name: String, width: Int, worldSize: Int, path: String) throws -> [Double] {
        let shape = try data.datasetInfo(name).shape
        guard shape == [width] || shape == [width * worldSize] else {
            let expected = worldSize == 1 ? "[\(width)]" : "[\(width)] or [\(width * worldSize)] (\(width) per rank)"
            throw A2QError("\(path):/data/\(name) has shape \(describe(shape)), expected \(expected)",
                           remedy: "the file is of a different run, or it was altered")
        }
        return try finite(data.read(name, as: Double.self, shape: shape).values, "/data/\(name)", path)
    }

    /// Every rank's copy of each buffer of `model` (`name → [R·n]`), as saved, shape-checked.
    public static func rankBuffers(_ path: String, model: Model, worldSize: Int) throws -> [String: [Float]] {
        let file = try HDF5File.openForReading(path)
        let group = try file.openGroup("data").openGroup("rank_buffers")
        var out: [String: [Float]] = [:]
        // Periodic checkpoints hold every buffer's rows; final.h5 and float.h5 (rank 0 alone) none.
        let missing = model.network.buffers.map(\.name).filter { !group.contains($0) }
        if !missing.isEmpty && missing.count < model.network.buffers.count {
            throw A2QError("\(path): /data/rank_buffers lacks \(missing.map { "'\($0)'" }.joined(separator: ", ")) though it holds the model's other buffers",
                           remedy: "the file was altered or is incomplete; resume from another checkpoint")
        }
        for (name, tensor) in model.network.buffers where group.contains(name) {
            out[name] = try nonNegativeVariance(finite(group.read(name, as: Float.self, shape: [worldSize, tensor.count]).values, "/data/rank_buffers/\(name)", path),
                                                "/data/rank_buffers/\(name)", name, path)
        }
        return out
    }

    /// Loads parameters, buffers and (if given) optimizer state into objects of the same
    /// layout. Each dataset's type and shape are checked before it is read, non-finite values
    /// and negative BatchNorm variances are refused, and the integer view stored beside each
    /// quantized layer must be exactly what the loaded parameters quantize to
    /// (`checkIntegerViews`). A v2 file's `layers` must name the model's leaves.
    public static func restore(_ path: String, into model: Model, optimizer: (any Optimizer)?) throws {
        let file = try HDF5File.openForReading(path)
        let root = try file.openGroup("model")
        let parameters = model.parameters
        for view in parameters.views {
            let values = try read(root, view.name, shape: view.shape, path: path,
                                  remedy: "the checkpoint is of a different model or bit-width configuration")
            for (i, v) in values.enumerated() { parameters.value(view)[i] = v }
        }
        for (name, tensor) in model.network.buffers {
            let values = try nonNegativeVariance(read(root, name, shape: tensor.shape, path: path, remedy: "the checkpoint is of a different model"),
                                                 "/model/\(name.replacingOccurrences(of: ".running_var", with: "/running_var"))", name, path)
            for (i, v) in values.enumerated() { tensor.data[i] = v }
        }
        if try file.intAttribute("format_version") >= 2 {
            let names = model.network.leaves.map(\.name)
            let stored = try? JSONDecoder().decode([String].self, from: Data(try file.stringAttribute("layers").utf8))
            guard stored == names else {
                throw A2QError("\(path): the layers attribute does not list the model's layers (\(names.count) leaves, from \(names.first ?? "") to \(names.last ?? ""))",
                               remedy: altered)
            }
        }
        try checkIntegerViews(root, model: model, path: path)
        guard let optimizer else { return }
        let g = try file.openGroup("optimizer")
        optimizer.stepCount = try g.intAttribute("step_count", in: 0...maxCount)
        for (name, buffer) in optimizer.stateBuffers {
            let state = try g.openGroup(name)
            for view in parameters.views {
                let values = try optimizerState(state, name, view, path: path)
                for (i, v) in values.enumerated() { buffer[view.offset + i] = v }
            }
        }
    }

    /// A BatchNorm buffer `name` (`<layer>.running_var`) must not be negative: the fold
    /// `γ/√(σ² + ε)` would be NaN. Other buffers pass unchanged.
    static func nonNegativeVariance(_ values: [Float], _ label: String, _ name: String, _ path: String) throws -> [Float] {
        guard name.hasSuffix(".running_var"), let bad = values.firstIndex(where: { $0 < 0 }) else { return values }
        throw A2QError("\(path): \(label) holds a negative variance (\(values[bad]) at index \(bad))", remedy: altered)
    }

    /// Each quantized layer's integer view in `/model/<layer>/` (weight_int, weight_scale, l1_norm,
    /// acc_min, acc_max, p_min and the layer's attributes) must be exactly what the loaded
    /// parameters quantize to: it is what users read as the layer's integers, written from the
    /// parameters at save time, and a2q never reads it otherwise.
    static func checkIntegerViews(_ root: HDF5Group, model: Model, path: String) throws {
        for layer in model.quantizedLayers where !layer.quantizer.isIdentity {
            guard let input = layer.input else { continue }
            let view = try layer.integerView(in: model, input: input, inputScale: layer.inputScale(in: model) ?? 0)
            guard root.contains(layer.name) else { throw A2QError("\(path): no /model/\(layer.name) group", remedy: altered) }
            try view.checkStoredView(in: try root.openGroup(layer.name), weightsFrom: "the layer's parameters quantize to",
                                     remedy: "the integer view or the parameters were changed after a2q wrote them (a2q writes the view from the parameters); use another copy of the checkpoint")
        }
    }

    /// Reads `/model/<group>/<dataset>` for the tensor `name`, which must have `shape` and
    /// finite values.
    static func read(_ root: HDF5Group, _ name: String, shape: [Int], path: String, remedy: String) throws -> [Float] {
        let (group, dataset) = split(name)
        guard root.contains(group) else { throw A2QError("\(path): no /model/\(group) group", remedy: remedy) }
        let g = try root.openGroup(group)
        guard g.contains(dataset) else { throw A2QError("\(path): no /model/\(group)/\(dataset)", remedy: remedy) }
        let info = try g.datasetInfo(dataset)
        guard info.shape == shape else {
            throw A2QError("\(path): /model/\(group)/\(dataset) has shape \(describe(info.shape)), this model needs \(describe(shape))", remedy: remedy)
        }
        return try finite(g.read(dataset, as: Float.self, shape: shape.map { $0 }).values, "/model/\(group)/\(dataset)", path)
    }

    /// Loads the float tensors (weights, biases, BatchNorm) whose names `model` also has, for
    /// `--init-from`; quantizer parameters are left to the conversion.
    /// The file is first read completely into the model it describes (`restore`), so that a
    /// file refused elsewhere is refused here too.
    public static func loadWeights(_ path: String, into model: Model) throws -> Int {
        try restore(path, into: try header(path).buildModel(), optimizer: nil)
        let file = try HDF5File.openForReading(path)
        let root = try file.openGroup("model")
        var loaded = 0
        for view in model.parameters.views where view.role == .weight || view.role == .bias || view.role == .normalization {
            let values = try read(root, view.name, shape: view.shape, path: path, remedy: "--init-from needs a checkpoint of the same --model")
            for (i, v) in values.enumerated() { model.parameters.value(view)[i] = v }
            loaded += 1
        }
        for (name, tensor) in model.network.buffers {
            let values = try read(root, name, shape: tensor.shape, path: path, remedy: "--init-from needs a checkpoint of the same --model")
            for (i, v) in values.enumerated() { tensor.data[i] = v }
        }
        return loaded
    }
}
