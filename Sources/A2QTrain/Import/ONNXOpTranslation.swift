import A2QCore
import A2QInteger
import ONNXProto

/// One ONNX node (sometimes with the node after it) as an a2q layer, with every attribute
/// checked against what the a2q layer computes; `shape` (`[C, H, W]` or `[F]`, one example)
/// follows the node.
extension ONNXGraphMatcher {
    /// Translates node `index`, which reads `input`, appending its layer (if it makes one) to
    /// `list`; returns the value the next node reads.
    mutating func translate(_ index: Int, input: String, shape: inout [Int], into list: inout [ImportedNode]) throws -> String {
        let node = graph.nodes[index]
        visited.insert(index)
        let inputs = node.presentInputs
        let layerOps: Set<String> = ["Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "MaxPool", "AveragePool",
                                     "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Identity"]
        guard !layerOps.contains(node.opType) || inputs.first == input else {
            throw error(node, "reads \(input) as its input #\((inputs.firstIndex(of: input) ?? 0) + 1) rather than as its data (#1): a2q has no layer for that")
        }
        if node.opType == "BatchNormalization", try node.int("training_mode", 0) != 0 {
            throw error(node, "is in training mode (training_mode = 1: batch statistics, and the export updated the running averages)",
                        remedy: "export the model in eval mode (model.eval(); no training=TrainingMode.TRAINING)")
        }
        let outputs = node.presentOutputs
        guard outputs.count == 1, let output = outputs.first else {
            throw error(node, "has \(outputs.count) outputs; a2q imports the inference form of \(node.opType), which has one",
                        remedy: node.opType == "BatchNormalization" ? "export the model in eval mode (model.eval(), no training=TrainingMode.TRAINING)" : "a2q imports \(ONNXGraph.supportedList)")
        }
        func append(_ layer: ImportedLayer) { list.append(.layer(layer)) }
        switch node.opType {
        case "Conv": append(try conv(node, shape: &shape))
        case "Gemm": append(try gemm(node, shape: &shape))
        case "MatMul": return try matMul(node, shape: &shape, into: &list)
        case "BatchNormalization": append(try batchNorm(node, shape: shape, previous: list.last))
        case "Relu": append(ImportedLayer(kind: .relu, origin: origin(node), path: node.sourcePath))
        case "MaxPool": append(try maxPool(node, shape: &shape))
        case "AveragePool": append(try averagePool(node, shape: &shape))
        case "GlobalAveragePool", "ReduceMean": append(try globalPool(node, shape: &shape))
        case "Flatten":
            let axis = try node.int("axis", 1)
            guard axis == 1 || (axis == -3 && shape.count == 3) else {
                throw error(node, "flattens from axis \(axis); a2q flattens [N, C, H, W] to [N, C·H·W] (axis 1)")
            }
            if let layer = flatten(node, shape: &shape) { append(layer) }
        case "Reshape": if let layer = try reshape(index, node, shape: &shape) { append(layer) }
        case "Identity": break
        case "Add", "Sub", "Mul", "Div":
            throw error(node, "\(node.opType == "Add" ? "adds a constant" : "applies a constant") inside the network: a2q takes Sub/Div/Mul/Add with constants only as the leading normalisation of the input (and an Add only as a MatMul's bias or a residual join)")
        case "Concat":
            throw error(node, "concatenates \(inputs.joined(separator: ", ")) along axis \((try? node.int("axis", 0)) ?? 0): a2q has no concatenation layer",
                        remedy: "a2q imports Concat only inside PyTorch's x.view(x.size(0), -1) chain (Shape→Gather→Unsqueeze→Concat→Reshape); it imports \(ONNXGraph.supportedList)")
        case "Shape", "Gather", "Unsqueeze":
            throw error(node, "computes with tensor shapes outside PyTorch's x.view(x.size(0), -1) chain (Shape→Gather(0)→Unsqueeze(0)→Concat(·, [-1])→Reshape), the one shape computation a2q imports")
        default:
            throw ONNXGraph.unsupported(node, source: source)
        }
        return output
    }

    /// `/conv1/Conv (Conv)`, for the mapping.
    func origin(_ node: Onnx_NodeProto) -> String { "\(node.name.isEmpty ? "(unnamed)" : node.name) (\(node.opType))" }

    /// The constant input `name` of `node` (`role` says which input, for the message).
    func constant(_ node: Onnx_NodeProto, _ name: String, _ role: String) throws -> ONNXTensor {
        guard let tensor = graph.constant(name) else {
            throw error(node, "takes its \(role) from \(name), which is computed, not a constant: a2q imports \(role)s stored in the file")
        }
        return tensor
    }

    /// The module path a weight layer is named after: the weight's name when the exporter kept
    /// the module's (`layer1.0.conv1.weight` → `layer1.0.conv1`), else the node's.
    func weightPath(_ node: Onnx_NodeProto, weight: String) -> String {
        let generated = weight.hasPrefix("onnx::") || weight.hasPrefix("val_") || !weight.contains(where: \.isLetter)
        guard !generated else { return node.modulePath }
        for suffix in [".weight", "_weight"] where weight.hasSuffix(suffix) { return String(weight.dropLast(suffix.count)) }
        return weight
    }

    /// A square pair of attribute values (`[3, 3]`), or the default.
    func square(_ node: Onnx_NodeProto, _ key: String, _ fallback: Int, what: String) throws -> Int {
        guard let values = try node.ints(key) else { return fallback }
        guard values.count == 2, values[0] == values[1] else {
            throw error(node, "has \(key) \(values): a2q's \(what) are square (the same along height and width)")
        }
        return values[0]
    }

    func requireImage(_ node: Onnx_NodeProto, _ shape: [Int]) throws {
        guard shape.count == 3 else { throw error(node, "takes a flat [N, \(shape.first ?? 0)] tensor; a2q's \(node.opType) takes [N, C, H, W]") }
    }

    func requireFlat(_ node: Onnx_NodeProto, _ shape: [Int]) throws -> Int {
        guard shape.count == 1 else {
            throw error(node, "takes a \(describe(shape)) tensor per image; a2q's linear layers take flat inputs",
                        remedy: "flatten before the linear layer (torch.flatten(x, 1))")
        }
        return shape[0]
    }

    /// The padding of a Conv or MaxPool: `pads` all equal (`[t, l, b, r]`), `auto_pad` NOTSET or VALID.
    func padding(_ node: Onnx_NodeProto) throws -> Int {
        let autoPad = try node.string("auto_pad") ?? "NOTSET"
        guard autoPad == "NOTSET" || autoPad == "VALID" else {
            throw error(node, "uses auto_pad \(autoPad); a2q imports explicit symmetric pads", remedy: "export with explicit padding (padding=1 rather than padding='same')")
        }
        let pads = try node.ints("pads") ?? [0, 0, 0, 0]
        guard pads.count == 4, pads.allSatisfy({ $0 == pads[0] }), pads[0] >= 0 else {
            throw error(node, "pads by \(pads) ([top, left, bottom, right]); a2q pads the same on every side")
        }
        return autoPad == "VALID" ? 0 : pads[0]
    }

    // MARK: Weight layers

    func conv(_ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer {
        try requireImage(node, shape)
        let inputs = node.presentInputs
        guard inputs.count >= 2 else { throw error(node, "has no weight input") }
        // Grouped (and depthwise, group = C): a2q's `groups`, the weight [out, C/group, k, k] as PyTorch's.
        let group = try node.int("group", 1)
        guard group >= 1, shape[0] % group == 0 else {
            throw error(node, "has group \(group), which does not divide its \(shape[0]) input channels")
        }
        let weight = try constant(node, inputs[1], "weight")
        guard weight.dims.count == 4, weight.dims[1] == shape[0] / group else {
            throw error(node, "has a weight of shape \(describe(weight.dims)) for an input of \(shape[0]) channels in \(group) group(s) (expected [out, \(shape[0] / group), k, k])")
        }
        let (out, kh, kw) = (weight.dims[0], weight.dims[2], weight.dims[3])
        guard out % group == 0 else { throw error(node, "has \(out) output channels, which \(group) groups do not divide") }
        guard kh == kw else { throw error(node, "has a \(kh)×\(kw) kernel; a2q's convolutions are square") }
        if let declared = try node.ints("kernel_shape"), declared != [kh, kw] {
            throw error(node, "declares kernel_shape \(declared) but its weight is \(describe(weight.dims))")
        }
        let stride = try square(node, "strides", 1, what: "strides")
        let dilation = try square(node, "dilations", 1, what: "dilations")
        guard dilation == 1 else { throw error(node, "is dilated (dilation \(dilation)); a2q's convolutions have dilation 1") }
        let pad = try padding(node)
        guard out > 0, (1...15).contains(kh), (1...8).contains(stride), pad < kh else {
            throw error(node, "has kernel \(kh), stride \(stride), padding \(pad); a2q's convolutions take kernel 1–15, stride 1–8 and padding below the kernel")
        }
        let (h, w) = (shape[1], shape[2])
        guard h + 2 * pad >= kh, w + 2 * pad >= kh else { throw error(node, "has a \(kh)×\(kh) kernel larger than its padded input \(describe(shape))") }
        var layer = ImportedLayer(kind: .conv(out: out, kernel: kh, stride: stride, padding: pad, groups: group), origin: origin(node),
                                  path: weightPath(node, weight: inputs[1]))
        layer.tensors["weight"] = ImportedTensor(shape: weight.dims, values: weight.floats)
        if inputs.count > 2 {
            let bias = try constant(node, inputs[2], "bias")
            guard bias.count == out else { throw error(node, "has a bias of shape \(describe(bias.dims)) for \(out) output channels") }
            layer.tensors["bias"] = ImportedTensor(shape: [out], values: bias.floats)
        }
        shape = [out, (h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kh) / stride + 1]
        return layer
    }

    func gemm(_ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer {
        let features = try requireFlat(node, shape)
        let inputs = node.presentInputs
        guard inputs.count >= 2 else { throw error(node, "has no weight input") }
        guard try node.int("transA", 0) == 0 else { throw error(node, "transposes its input (transA = 1); a2q's linear layers take [N, features]") }
        let alpha = try node.float("alpha", 1), beta = try node.float("beta", 1)
        guard alpha == 1, beta == 1 || inputs.count == 2 else {
            throw error(node, "scales by alpha = \(alpha), beta = \(beta); a2q imports Gemm with alpha = beta = 1 (what nn.Linear exports)")
        }
        let weight = try constant(node, inputs[1], "weight")
        let transposed = try node.int("transB", 0) == 1
        guard weight.dims.count == 2, weight.dims[transposed ? 1 : 0] == features else {
            throw error(node, "has a weight of shape \(describe(weight.dims)) (transB = \(transposed ? 1 : 0)) for \(features) input features")
        }
        let out = weight.dims[transposed ? 0 : 1]
        guard out > 0 else { throw error(node, "has no outputs (weight \(describe(weight.dims)))") }
        var layer = ImportedLayer(kind: .linear(out: out), origin: origin(node), path: weightPath(node, weight: inputs[1]))
        layer.tensors["weight"] = transposed ? ImportedTensor(shape: [out, features], values: weight.floats)
                                             : Self.transposed(weight, rows: features, columns: out)
        if inputs.count > 2 {
            let bias = try constant(node, inputs[2], "bias")
            guard bias.count == out || bias.isScalar, bias.dims.count <= 2 else {
                throw error(node, "has a bias (C) of shape \(describe(bias.dims)) for \(out) outputs")
            }
            layer.tensors["bias"] = ImportedTensor(shape: [out]) {
                let values = try bias.floats()
                return values.count == out ? values : [Float](repeating: values[0], count: out)
            }
        }
        shape = [out]
        return layer
    }

    /// `MatMul` with a constant `[in, out]` weight (TorchScript's bias-less nn.Linear), and the
    /// `Add` of a constant `[out]` after it as the bias.
    mutating func matMul(_ node: Onnx_NodeProto, shape: inout [Int], into list: inout [ImportedNode]) throws -> String {
        let features = try requireFlat(node, shape)
        let inputs = node.presentInputs
        guard inputs.count == 2 else { throw error(node, "has \(inputs.count) inputs") }
        let weight = try constant(node, inputs[1], "weight")
        guard weight.dims.count == 2, weight.dims[0] == features else {
            throw error(node, "multiplies [N, \(features)] by a weight of shape \(describe(weight.dims)); a2q imports MatMul with a [\(features), out] weight")
        }
        let out = weight.dims[1]
        guard out > 0 else { throw error(node, "has no outputs (weight \(describe(weight.dims)))") }
        var layer = ImportedLayer(kind: .linear(out: out), origin: origin(node), path: weightPath(node, weight: inputs[1]))
        layer.tensors["weight"] = Self.transposed(weight, rows: features, columns: out)
        var output = node.presentOutputs.first ?? ""
        let readers = users(of: output)
        if readers.count == 1, output != graph.output {
            let add = graph.nodes[readers[0]]
            let addInputs = add.presentInputs
            if add.opType == "Add", addInputs.count == 2, let other = addInputs.first(where: { $0 != output }),
               let bias = graph.constant(other), bias.count == out, bias.dims.last == out || bias.dims.isEmpty {
                layer.tensors["bias"] = ImportedTensor(shape: [out], values: bias.floats)
                layer.origin += " + \(origin(add))"
                visited.insert(readers[0])
                output = add.presentOutputs.first ?? ""
            }
        }
        list.append(.layer(layer))
        shape = [out]
        return output
    }

    /// `[rows, columns]` values as `[columns, rows]`.
    static func transposed(_ tensor: ONNXTensor, rows: Int, columns: Int) -> ImportedTensor {
        ImportedTensor(shape: [columns, rows]) {
            let values = try tensor.floats()
            var result = [Float](repeating: 0, count: values.count)
            for r in 0..<rows { for c in 0..<columns { result[c * rows + r] = values[r * columns + c] } }
            return result
        }
    }

    // MARK: Other layers

    /// a2q's BatchNorm (ε = 1e-5) with the node's statistics; another ε is moved into the
    /// running variance (`σ² + ε` is what both compute with).
    func batchNorm(_ node: Onnx_NodeProto, shape: [Int], previous: ImportedNode?) throws -> ImportedLayer {
        guard case .layer(let layer)? = previous, layer.isWeightLayer else {
            throw error(node, "does not directly follow a Conv or Gemm: a2q folds BatchNorm into the weight layer before it in integer models",
                        remedy: "a2q imports BatchNormalization right after a Conv or Linear (PyTorch's exporters fold those into the Conv already)")
        }
        let inputs = node.presentInputs
        guard inputs.count == 5 else { throw error(node, "has \(inputs.count) inputs (expected X, scale, B, mean, var)") }
        let channels = shape[0]
        var tensors: [String: ONNXTensor] = [:]
        for (key, name) in zip(["weight", "bias", "running_mean", "running_var"], inputs.dropFirst()) {
            let tensor = try constant(node, name, key == "weight" ? "scale" : key == "bias" ? "shift" : key.replacingOccurrences(of: "_", with: " "))
            guard tensor.count == channels else {
                throw error(node, "has \(name) of shape \(describe(tensor.dims)) for \(channels) channels")
            }
            tensors[key] = tensor
        }
        let epsilon = try node.float("epsilon", 1e-5)
        guard epsilon.isFinite, epsilon >= 0 else { throw error(node, "has epsilon \(epsilon)") }
        let path = weightPath(node, weight: inputs[1])
        var result = ImportedLayer(kind: .batchNorm, origin: origin(node), path: path)
        for (key, tensor) in tensors where key != "running_var" { result.tensors[key] = ImportedTensor(shape: [channels], values: tensor.floats) }
        guard let variance = tensors["running_var"] else { return result }
        let label = node.label, file = source
        result.tensors["running_var"] = ImportedTensor(shape: [channels]) {
            let values = try variance.floats()
            if let bad = values.firstIndex(where: { $0 < 0 }) {
                throw A2QError("\(file): \(label) has a negative running variance (\(values[bad]) in channel \(bad))",
                               remedy: "the model's BatchNorm statistics are broken; check the PyTorch model")
            }
            guard epsilon != Self.batchNormEpsilon else { return values }
            let moved = values.map { Float(Double($0) + Double(epsilon) - Double(Self.batchNormEpsilon)) }
            guard moved.allSatisfy({ $0 >= 0 }) else {
                throw A2QError("\(file): \(label) has epsilon \(epsilon) and a running variance below \(Self.batchNormEpsilon - epsilon): a2q's BatchNorm (ε = 1e-5) cannot compute it")
            }
            return moved
        }
        return result
    }

    /// The ε of a2q's BatchNorm.
    static var batchNormEpsilon: Float { 1e-5 }

    func maxPool(_ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer {
        try requireImage(node, shape)
        guard let kernelShape = try node.ints("kernel_shape") else { throw error(node, "has no kernel_shape") }
        guard kernelShape.count == 2, kernelShape[0] == kernelShape[1] else {
            throw error(node, "has kernel_shape \(kernelShape); a2q's max pool is square")
        }
        let kernel = kernelShape[0]
        let stride = try square(node, "strides", 1, what: "max pool strides")
        guard try padding(node) == 0 else { throw error(node, "pads its input; a2q's max pool has no padding", remedy: "use nn.MaxPool2d without padding") }
        guard try node.int("ceil_mode", 0) == 0 else { throw error(node, "uses ceil_mode = 1; a2q's max pool rounds the output size down (floor)") }
        guard try square(node, "dilations", 1, what: "max pool dilations") == 1 else { throw error(node, "is dilated; a2q's max pool is not") }
        guard kernel > 0, stride > 0, shape[1] >= kernel, shape[2] >= kernel else {
            throw error(node, "pools \(kernel)×\(kernel) windows (stride \(stride)) over a \(describe(shape)) input")
        }
        shape = [shape[0], (shape[1] - kernel) / stride + 1, (shape[2] - kernel) / stride + 1]
        return ImportedLayer(kind: .maxPool(kernel: kernel, stride: stride), origin: origin(node), path: node.sourcePath)
    }

    /// `AveragePool` over square windows (PyTorch's `nn.AvgPool2d`): symmetric padding up to
    /// kernel/2 counted in the divisor (`count_include_pad = 1`, PyTorch's default; without
    /// padding either value computes the same), floor mode, no dilation.
    func averagePool(_ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer {
        try requireImage(node, shape)
        guard let kernelShape = try node.ints("kernel_shape") else { throw error(node, "has no kernel_shape") }
        guard kernelShape.count == 2, kernelShape[0] == kernelShape[1] else {
            throw error(node, "has kernel_shape \(kernelShape); a2q's average pool is square", remedy: "use nn.AvgPool2d with one kernel size (kernel_size=k)")
        }
        let kernel = kernelShape[0]
        let stride = try square(node, "strides", 1, what: "average pool strides")
        let pad = try padding(node)
        guard try node.int("ceil_mode", 0) == 0 else {
            throw error(node, "uses ceil_mode = 1; a2q's average pool rounds the output size down (floor)", remedy: "use nn.AvgPool2d(..., ceil_mode=False) (the default)")
        }
        guard try square(node, "dilations", 1, what: "average pool dilations") == 1 else { throw error(node, "is dilated; a2q's average pool is not") }
        if pad > 0, try node.int("count_include_pad", 0) == 0 {
            throw error(node, "leaves its padding out of the divisor (count_include_pad = 0: border windows divide by the pixels they cover); a2q's average pool divides every window by kernel², padding included (count_include_pad = 1)",
                        remedy: "use nn.AvgPool2d(..., count_include_pad=True) (PyTorch's default), or no padding")
        }
        guard (1...64).contains(kernel), (1...64).contains(stride), pad <= kernel / 2 else {
            throw error(node, "has kernel \(kernel), stride \(stride), padding \(pad); a2q's average pool takes kernel and stride 1–64 and padding up to kernel/2 (as nn.AvgPool2d)")
        }
        guard shape[1] + 2 * pad >= kernel, shape[2] + 2 * pad >= kernel else {
            throw error(node, "pools \(kernel)×\(kernel) windows (padding \(pad)) over a \(describe(shape)) input")
        }
        let window = PoolWindow(kernel: kernel, stride: stride, padding: pad)
        shape = [shape[0], window.outputSize(shape[1]), window.outputSize(shape[2])]
        return ImportedLayer(kind: .avgPool(kernel: kernel, stride: stride, padding: pad), origin: origin(node), path: node.sourcePath)
    }

    /// `GlobalAveragePool`, or `ReduceMean` over H and W (axes `[2, 3]` or `[-1, -2]`, from the
    /// attribute up to opset 17 or the second input from 18; either `keepdims`).
    func globalPool(_ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer {
        try requireImage(node, shape)
        if node.opType == "ReduceMean" {
            let inputs = node.presentInputs
            let axes: [Int]
            if inputs.count > 1 {
                axes = try constant(node, inputs[1], "axes").int64s().map { Int($0) }
            } else if let attribute = try node.ints("axes") {
                axes = attribute
            } else {
                throw error(node, "averages over every axis; a2q imports ReduceMean over height and width (axes [2, 3])")
            }
            guard Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3], axes.count == 2 else {
                throw error(node, "averages over axes \(axes); a2q imports ReduceMean over height and width (axes [2, 3] or [-1, -2])")
            }
        }
        shape = [shape[0]]
        return ImportedLayer(kind: .globalAvgPool, origin: origin(node), path: node.sourcePath)
    }

    /// A flatten of `[C, H, W]`; nothing for a tensor that is already flat (after a global pool).
    func flatten(_ node: Onnx_NodeProto, shape: inout [Int]) -> ImportedLayer? {
        guard shape.count == 3 else { return nil }
        shape = [shape.reduce(1, *)]
        return ImportedLayer(kind: .flatten, origin: origin(node), path: node.sourcePath)
    }

    /// `Reshape` to `[N, features]`: a constant target `[-1, F]`, `[0, -1]`, `[N, -1]` or `[N, F]`
    /// (a batch baked in by a fixed-batch export), or the recognised view chain.
    func reshape(_ index: Int, _ node: Onnx_NodeProto, shape: inout [Int]) throws -> ImportedLayer? {
        let features = shape.reduce(1, *)
        if !viewReshapes.contains(index) {
            let inputs = node.presentInputs
            guard inputs.count == 2, let target = graph.constant(inputs[1]) else {
                let maker = inputs.count == 2 ? graph.node(making: inputs[1]).map { " (made by \($0.label))" } ?? "" : ""
                throw error(node, "takes its target shape from \(inputs.count == 2 ? inputs[1] : "nothing")\(maker), which is neither a constant nor PyTorch's x.view(x.size(0), -1) chain")
            }
            let dims = try target.int64s()
            let allowZero = try node.int("allowzero", 0) == 1
            let batchOK = dims.count == 2 && (dims[0] == -1 || dims[0] > 0 || (dims[0] == 0 && !allowZero))
            let featuresOK = dims.count == 2 && (dims[1] == Int64(features) || (dims[1] == -1 && dims[0] != -1))
            guard batchOK, featuresOK else {
                throw error(node, "reshapes a \(describe(shape)) tensor per image to \(dims); a2q imports Reshape only as a flatten to [N, \(features)]")
            }
        }
        return flatten(node, shape: &shape)
    }
}
