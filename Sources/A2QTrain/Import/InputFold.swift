import A2QCore

/// The normalisation a graph applies to its image input before the first layer: `Sub`, `Div`,
/// `Mul` and `Add` nodes, each with a scalar or per-channel constant.
struct GraphNormalization {
    /// One node: `x ↦ x − c`, `x / c`, `x · c`, `x + c` (or `c − x` when the constant comes first).
    struct Step {
        var op: String
        var constant: ONNXTensor
        var constantFirst: Bool
    }

    var channels: Int
    var steps: [Step] = []
    /// The nodes, for the report.
    var nodes: [String] = []

    /// The per-channel map `x ↦ a·x + b` the steps compute.
    func affine() throws -> (a: [Double], b: [Double]) {
        var a = [Double](repeating: 1, count: channels), b = [Double](repeating: 0, count: channels)
        for step in steps {
            let values = try step.constant.floats().map(Double.init)
            for c in 0..<channels {
                let v = values.count == 1 ? values[0] : values[c]
                switch (step.op, step.constantFirst) {
                case ("Sub", false): b[c] -= v
                case ("Sub", true): a[c] = -a[c]; b[c] = v - b[c]
                case ("Add", _): b[c] += v
                case ("Mul", _): a[c] *= v; b[c] *= v
                default: a[c] /= v; b[c] /= v  // Div by the constant (the matcher refuses c / x)
                }
            }
        }
        return (a, b)
    }
}

/// Folds the map from a2q's input to what the first layer of the ONNX graph reads, `x = a·p + b`
/// per channel (the caller's input conventions, then the graph's own normalisation), into that
/// first layer: a Conv (`W'[o, c] = a_c·W[o, c]`, `b'[o] = b[o] + Σ_{c,i,j} W[o, c, i, j]·b_c`) or a
/// Flatten and a Linear (the same per input feature). Exact except at a convolution's zero
/// padding when `b ≠ 0`: PyTorch pads the normalised image with 0, a2q pads `p` with 0, which is
/// `x = b` after the map, so outputs whose window reaches into the padding differ; the fold
/// measures the largest such change and reports it.
enum InputFold {
    /// What the fold did, for the command's report.
    struct Report {
        var layer: String
        var a: [Double]
        var b: [Double]
        /// The largest change of a border output of the folded conv (0 when exact).
        var borderChange: Double
    }

    /// The index of the layer a fold changes: the first node when it is a conv, the second when a
    /// flatten and a linear open the network; nil when neither.
    static func target(_ nodes: [ImportedNode]) -> Int? {
        guard case .layer(let first)? = nodes.first else { return nil }
        if case .conv = first.kind { return 0 }
        if case .flatten = first.kind, nodes.count > 1, case .layer(let second) = nodes[1], case .linear = second.kind { return 1 }
        return nil
    }

    /// Applies `x = a·p + b` to the first layer of `nodes` (whose input is `inputShape`).
    static func apply(a: [Double], b: [Double], to nodes: inout [ImportedNode], inputShape: [Int], source: String,
                      describedAs what: String) throws -> Report? {
        if a.allSatisfy({ $0 == 1 }) && b.allSatisfy({ $0 == 0 }) { return nil }
        guard a.allSatisfy({ $0.isFinite && $0 != 0 }), b.allSatisfy(\.isFinite) else {
            throw A2QError("\(source): \(what) maps the input by a = \(a), b = \(b), which is not an invertible normalisation")
        }
        guard let index = target(nodes), case .layer(var layer) = nodes[index],
              let weight = layer.tensors["weight"] else {
            throw A2QError("\(source): \(what) cannot be folded: the network does not start with a Conv (or a Flatten and a Gemm/MatMul)",
                           remedy: "a2q folds the input normalisation into the first layer; export a model whose first layer is a convolution or a linear layer")
        }
        let channels = inputShape[0]
        var groups = 1
        if case .conv(_, _, _, _, let g) = layer.kind { groups = g }
        let bias = layer.tensors["bias"] ?? .zeros([weight.shape[0]])
        let out = weight.shape[0], perOutput = weight.shape.dropFirst().reduce(1, *)
        // Input feature f of output o's weight row belongs to channel (o's group)·C/groups + f / (per-channel
        // size): conv [C/groups, k, k], linear [C·H·W] (one group).
        let (groupChannels, groupOut) = (channels / groups, out / groups)
        let perChannel = perOutput / groupChannels
        func channel(_ o: Int, _ f: Int) -> Int { (o / groupOut) * groupChannels + f / perChannel }
        let originalWeight = weight.values, originalBias = bias.values
        layer.tensors["weight"] = ImportedTensor(shape: weight.shape) {
            var w = try originalWeight()
            for o in 0..<out {
                for f in 0..<perOutput { w[o * perOutput + f] = Float(Double(w[o * perOutput + f]) * a[channel(o, f)]) }
            }
            return w
        }
        layer.tensors["bias"] = ImportedTensor(shape: [out]) {
            let w = try originalWeight()
            var result = try originalBias()
            for o in 0..<out {
                var sum = Double(result[o])
                for f in 0..<perOutput { sum += Double(w[o * perOutput + f]) * b[channel(o, f)] }
                result[o] = Float(sum)
            }
            return result
        }
        var borderChange = 0.0
        if case .conv(_, let kernel, let stride, let padding, _) = layer.kind, padding > 0, b.contains(where: { $0 != 0 }) {
            borderChange = try paddingEffect(weight: originalWeight(), out: out, channels: channels, groups: groups, kernel: kernel,
                                             stride: stride, padding: padding, height: inputShape[1], width: inputShape[2], b: b)
        }
        nodes[index] = .layer(layer)
        return Report(layer: layer.path, a: a, b: b, borderChange: borderChange)
    }

    /// The largest `|Σ W[o, c, i, j]·b_c|` over the taps that fall into the zero padding, over
    /// every output channel and position: how much a border output of the folded conv differs
    /// from the original's (`c` over the input channels of `o`'s group).
    static func paddingEffect(weight: [Float], out: Int, channels: Int, groups: Int = 1, kernel: Int, stride: Int, padding: Int,
                              height: Int, width: Int, b: [Double]) -> Double {
        let ho = (height + 2 * padding - kernel) / stride + 1, wo = (width + 2 * padding - kernel) / stride + 1
        let (groupChannels, groupOut) = (channels / groups, out / groups)
        var largest = 0.0
        for o in 0..<out {
            let firstChannel = (o / groupOut) * groupChannels
            for y in 0..<ho {
                for x in 0..<wo {
                    var sum = 0.0
                    for i in 0..<kernel {
                        let iy = y * stride - padding + i
                        for j in 0..<kernel {
                            let ix = x * stride - padding + j
                            guard iy < 0 || iy >= height || ix < 0 || ix >= width else { continue }
                            for c in 0..<groupChannels {
                                sum += Double(weight[((o * groupChannels + c) * kernel + i) * kernel + j]) * b[firstChannel + c]
                            }
                        }
                    }
                    largest = max(largest, abs(sum))
                }
            }
        }
        return largest
    }
}
