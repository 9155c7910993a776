import A2QCheckpoint
import A2QCore
import Foundation

/// An imported model written as an ordinary a2q float checkpoint, the kind `a2q train
/// --quantizer float` leaves as `final.h5`: the weights in the float build's parameters (conv
/// weights `[out, in, k, k]`, linear `[out, in]`), BatchNorm statistics in its buffers, the tree
/// and input shape stored, phase `float`, and a configuration whose `model` is the `.onnx` file
/// and whose `data` is the data set to evaluate on. `eval`, `train --init-from` (with `--model
/// MODEL.onnx`), `export` of later runs and `model` read it as they read a2q's own. What the import
/// did to the input is recorded in `/import` (docs/CHECKPOINT.md).
extension ONNXImport {
    /// What `writeCheckpoint` wrote.
    public struct Written: Sendable {
        /// Parameter values in the float build.
        public var parameters: Int
        /// Tensors filled (parameters and BatchNorm buffers).
        public var tensors: Int
    }

    /// Reads every weight, fills a float build of `description` and saves it to `path`
    /// atomically (nothing is left under `path` when anything fails). Each tensor is read once
    /// and its ONNX data released as it is copied (`ImportedTensors`), so call this once per import.
    public func writeCheckpoint(to path: String, data: String) throws -> Written {
        var config = TrainConfig()
        config.model = ModelName(rawValue: source)
        config.quantizer = .float
        config.data = data
        let model = try ModelBuilder.build(config, quantized: false, classes: classes, inputShape: inputShape, description: description)
        let parameters = model.parameters
        var filled = 0
        for view in parameters.views {
            guard let tensor = tensors.take(view.name) else {
                preconditionFailure("the imported tree declares \(view.name), which the import did not read (or writeCheckpoint ran twice)")
            }
            let values = try finite(tensor.values(), view.name)
            precondition(values.count == view.count && tensor.shape == view.shape,
                         "\(view.name): imported \(tensor.shape), the layer declares \(view.shape)")
            values.withUnsafeBufferPointer { buffer in
                if let base = buffer.baseAddress { parameters.value(view).update(from: base, count: view.count) }
            }
            filled += 1
        }
        for (name, buffer) in model.network.buffers {
            guard let tensor = tensors.take(name) else {
                preconditionFailure("the imported tree declares the buffer \(name), which the import did not read (or writeCheckpoint ran twice)")
            }
            let values = try finite(tensor.values(), name)
            precondition(values.count == buffer.count, "\(name): imported \(values.count) values for \(buffer.count)")
            for (i, v) in values.enumerated() { buffer.data[i] = v }
            filled += 1
        }
        precondition(tensors.isEmpty, "the import read tensors the tree does not declare")
        try CheckpointFile.save(path: path, model: model, optimizer: nil, state: TrainingState(phase: .float), config: config,
                                worldSize: 1, annotate: annotate)
        return Written(parameters: parameters.count, tensors: filled)
    }

    /// A tensor's values, refused when one is NaN or infinite (a2q would train on them).
    private func finite(_ values: [Float], _ name: String) throws -> [Float] {
        guard let bad = values.firstIndex(where: { !$0.isFinite }) else { return values }
        throw A2QError("\(source): the tensor for \(name) holds \(values[bad]) at index \(bad)",
                       remedy: "a2q imports finite weights; check the PyTorch model")
    }

    /// `/import`: where the model came from and what the import did to its input.
    func annotate(_ file: HDF5File) throws {
        let g = try file.createGroup("import")
        try g.setAttribute("source", (source as NSString).lastPathComponent)
        try g.setAttribute("producer", producer)
        try g.setAttribute("opset", opset)
        try g.setAttribute("ir_version", irVersion)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try g.setAttribute("input_conventions", String(decoding: try encoder.encode(conventions), as: UTF8.self))
        try g.setAttribute("graph_normalization", normalizationNodes.joined(separator: ", "))
        if let fold {
            try g.setAttribute("folded_into", fold.layer)
            try g.write("folded_scale", fold.scale, shape: [fold.scale.count])
            try g.write("folded_shift", fold.shift, shape: [fold.shift.count])
            try g.setAttribute("border_change", fold.borderChange)
        }
        try g.setAttribute("note", "the model takes a2q's images p = pixel/255 in [0, 1]; the map p -> x = scale*p + shift per channel (the input conventions, then the graph's own normalisation) is folded into the first layer")
    }
}
