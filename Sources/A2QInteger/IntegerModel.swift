import A2QCore
import A2QQuant

/// One weight layer of an integer model: integer weights and everything needed to run it
/// with a P-bit accumulator and requantise its output.
public struct IntegerLayer: Sendable {
    public enum Kind: String, Sendable, Codable { case linear, conv2d }
    public var name: String
    public var kind: Kind
    /// `[out, in]` or `[out, in, kh, kw]`.
    public var shape: [Int]
    public var stride: Int = 1
    public var padding: Int = 0
    /// Integer weights, row-major, one row of K per output channel.
    public var weights: [Int32]
    public var quantizer: String
    public var weightBits: Int
    public var accumulatorBits: Int
    /// The integer format of this layer's input and its scale (`x_float = x_int · input_scale`).
    public var input: InputFormat
    public var inputScale: Float
    /// Per output channel: `s_w`, the float bias, and the requantisation
    /// `y = acc · multiplier + offset` (with BatchNorm folded in when it follows the layer).
    public var weightScale: [Float]
    public var bias: [Float]
    public var multiplier: [Float]
    public var offset: [Float]
    /// The L1 bound T of a constrained layer (nil when unconstrained).
    public var l1Bound: Double?
    public var rounding: String
    public var foldedBatchNorm: String?

    public init(name: String, kind: Kind, shape: [Int], weights: [Int32], quantizer: String, weightBits: Int,
                accumulatorBits: Int, input: InputFormat, inputScale: Float, weightScale: [Float], bias: [Float],
                multiplier: [Float], offset: [Float], l1Bound: Double?, rounding: String, foldedBatchNorm: String?) {
        self.name = name
        self.kind = kind
        self.shape = shape
        self.weights = weights
        self.quantizer = quantizer
        self.weightBits = weightBits
        self.accumulatorBits = accumulatorBits
        self.input = input
        self.inputScale = inputScale
        self.weightScale = weightScale
        self.bias = bias
        self.multiplier = multiplier
        self.offset = offset
        self.l1Bound = l1Bound
        self.rounding = rounding
        self.foldedBatchNorm = foldedBatchNorm
    }

    public var outChannels: Int { shape[0] }
    public var fanIn: Int { shape.dropFirst().reduce(1, *) }

    /// Exact per-channel facts of the integer weights.
    public var report: LayerAccumulatorReport {
        LayerAccumulatorReport(integers: weights, outChannels: outChannels, input: input, accumulatorBits: accumulatorBits)
    }
}

/// The operations of an integer model, in order. A residual block nests its branches, so the
/// list is a tree (a graph of two-way branches that join at an add).
public indirect enum IntegerOp: Sendable {
    /// Image pixels as unsigned integers (`x_float = pixel · scale`).
    case input(format: InputFormat, scale: Float)
    case layer(IntegerLayer)
    case relu
    /// Requantise floats to the next layer's integers: `clip(rint(y / scale), lo, hi)`.
    case quantize(name: String, format: InputFormat, scale: Float)
    case maxPool(kernel: Int, stride: Int)
    case flatten
    /// Global average pooling of integers `[C, H, W] → [C]`: per channel the sum of the H·W
    /// integers in row-major order in an `accumulatorBits`-bit register (an accumulator like a
    /// layer's: `verify` proves it and the engine simulates it in every overflow mode), then the
    /// float32 value `Float(sum) · m` with `m = Float(scale) / Float(H·W)` rounded once (`scale`
    /// being the input quantizer's). A quantize follows.
    case globalAvgPool(name: String, accumulatorBits: Int)
    /// `body(x) + shortcut(x)`: both branches start from the same integers `x` and end in
    /// integers (`b` at scale `s_b` from the body's last quantize; `c` at `s_c` from the
    /// shortcut's, or `x` itself at its own scale when `shortcut` is nil, the identity). The
    /// join is the float32 value `Float(b)·s_b + Float(c)·s_c` (each product rounded, then the
    /// sum: no fused multiply-add); ReLU and a quantize follow.
    case residual(name: String, body: [IntegerOp], shortcut: [IntegerOp]?)
}

extension IntegerOp {
    /// This op and every op nested in it, in execution order (body before shortcut).
    var flattened: [IntegerOp] {
        if case .residual(_, let body, let shortcut) = self { return [self] + body.flatMap(\.flattened) + (shortcut ?? []).flatMap(\.flattened) }
        return [self]
    }
}

/// A global average pool's accumulator: per image and channel, the sum of `count` (H·W)
/// integers of `input` in an `accumulatorBits`-bit register.
public struct PoolAccumulator: Sendable, Equatable {
    public var name: String
    public var accumulatorBits: Int
    public var input: InputFormat
    public var channels: Int
    /// Integers summed per channel (H·W of the pool's input).
    public var count: Int
}

/// One accumulator of an integer model: a weight layer's dot products or a pool's sums.
public enum Accumulator: Sendable {
    case layer(IntegerLayer)
    case pool(PoolAccumulator)

    public var name: String {
        switch self {
        case .layer(let layer): return layer.name
        case .pool(let pool): return pool.name
        }
    }

    /// P as the model stores it.
    public var accumulatorBits: Int {
        switch self {
        case .layer(let layer): return layer.accumulatorBits
        case .pool(let pool): return pool.accumulatorBits
        }
    }
}

/// A standalone integer network (what `a2q export` writes and the integer engine runs).
public struct IntegerModel: Sendable {
    public var model: String
    public var classes: Int
    /// `[channels, height, width]` of one input image.
    public var inputShape: [Int]
    public var ops: [IntegerOp]

    /// The weight layers, in execution order (a block's body before its shortcut).
    public var layers: [IntegerLayer] {
        ops.flatMap(\.flattened).compactMap { if case .layer(let l) = $0 { return l } else { return nil } }
    }

    /// Every accumulator of the model in execution order (a block's body before its shortcut):
    /// each weight layer's dot products and each global average pool's per-channel sum. This
    /// one list orders `verify`'s verdicts, the engine's overflow counts and `eval --outputs`.
    public var accumulators: [Accumulator] {
        var format: InputFormat?
        var shape = inputShape
        var pools: [PoolAccumulator] = []
        try? validate(ops, shape: &shape, format: &format, depth: 0, pools: &pools)  // valid since init
        var poolIndex = 0
        return ops.flatMap(\.flattened).compactMap { op in
            switch op {
            case .layer(let layer): return .layer(layer)
            case .globalAvgPool:
                defer { poolIndex += 1 }
                return pools.indices.contains(poolIndex) ? .pool(pools[poolIndex]) : nil
            default: return nil
            }
        }
    }

    /// The global average pools, in execution order, with the facts behind their worst case.
    public var pools: [PoolAccumulator] {
        accumulators.compactMap { if case .pool(let pool) = $0 { return pool } else { return nil } }
    }

    public init(model: String, classes: Int, inputShape: [Int], ops: [IntegerOp]) throws {
        self.model = model
        self.classes = classes
        self.inputShape = inputShape
        self.ops = ops
        try validate()
    }

    /// Checks everything the engine relies on, before any arithmetic with the values: formats
    /// and scales are in range, weights fit M bits, each layer's input format is the previous
    /// quantizer's, per-channel vectors are finite and have one entry per channel, strides and
    /// kernels are positive, shapes chain to `classes` scores, and P is supported.
    public func validate() throws {
        guard (1...65536).contains(classes) else { throw A2QError("the model declares \(classes) classes") }
        guard (1...3).contains(inputShape.count), inputShape.allSatisfy({ (1...4096).contains($0) }),
              inputShape.reduce(1, *) <= 1 << 24 else {
            throw A2QError("the input shape \(describe(inputShape)) is not a valid image shape")
        }
        var format: InputFormat?
        var shape = inputShape
        var pools: [PoolAccumulator] = []
        try validate(ops, shape: &shape, format: &format, depth: 0, pools: &pools)
        guard shape == [classes] else { throw A2QError("the model ends in \(describe(shape)), not \(classes) class scores") }
        var names = Set<String>()
        for layer in layers where !names.insert(layer.name).inserted { throw A2QError("two layers are named \(layer.name)") }
    }

    /// Checks a list of ops from `shape`/`format` on, leaving both as the list's output, and
    /// appends each global average pool, with its input format and shape, to `pools`.
    func validate(_ ops: [IntegerOp], shape: inout [Int], format: inout InputFormat?, depth: Int,
                  pools: inout [PoolAccumulator]) throws {
        guard depth <= 64 else { throw A2QError("residual blocks nest deeper than 64 levels") }
        for op in ops {
            switch op {
            case .input(let f, let scale), .quantize(_, let f, let scale):
                guard (1...16).contains(f.bits), scale.isFinite, scale > 0 else {
                    throw A2QError("an activation quantizer has \(f.bits) bits and scale \(scale) (needs 1...16 bits and a positive scale)")
                }
                format = f
            case .layer(let layer):
                try validate(layer)
                guard let f = format else { throw A2QError("layer \(layer.name): its input is not quantized (no quantize op before it)") }
                guard f == layer.input else {
                    throw A2QError("layer \(layer.name): declared input \(layer.input) does not match the previous layer's output \(f)")
                }
                switch layer.kind {
                case .conv2d:
                    guard shape.count == 3, shape[0] == layer.shape[1] else {
                        throw A2QError("layer \(layer.name): input \(describe(shape)) does not fit weights \(describe(layer.shape))")
                    }
                    let k = layer.shape[2]
                    shape = [layer.shape[0], (shape[1] + 2 * layer.padding - k) / layer.stride + 1,
                             (shape[2] + 2 * layer.padding - k) / layer.stride + 1]
                    guard shape[1] > 0, shape[2] > 0, shape[1] + 2 * layer.padding >= k else {
                        throw A2QError("layer \(layer.name): a \(k)×\(k) kernel does not fit its input")
                    }
                case .linear:
                    guard shape.reduce(1, *) == layer.shape[1] else {
                        throw A2QError("layer \(layer.name): input of \(shape.reduce(1, *)) values does not fit weights \(describe(layer.shape))")
                    }
                    shape = [layer.shape[0]]
                }
                format = nil
            case .maxPool(let kernel, let stride):
                guard kernel > 0, stride > 0 else { throw A2QError("max pool with kernel \(kernel) and stride \(stride) (both must be positive)") }
                guard shape.count == 3, shape[1] >= kernel, shape[2] >= kernel else {
                    throw A2QError("a \(kernel)×\(kernel) max pool does not fit its input \(describe(shape))")
                }
                shape = [shape[0], (shape[1] - kernel) / stride + 1, (shape[2] - kernel) / stride + 1]
            case .flatten:
                shape = [shape.reduce(1, *)]
            case .relu:
                break
            case .globalAvgPool(let name, let bits):
                guard shape.count == 3 else { throw A2QError("average pool \(name): input \(describe(shape)) is not [C, H, W]") }
                guard format != nil else { throw A2QError("average pool \(name): its input is not quantized") }
                guard (2...62).contains(bits) else { throw A2QError("average pool \(name): accumulator width \(bits) is outside 2...62") }
                if let format {
                    pools.append(PoolAccumulator(name: name, accumulatorBits: bits, input: format, channels: shape[0],
                                                 count: shape[1] * shape[2]))
                }
                shape = [shape[0]]
                format = nil
            case .residual(let name, let body, let shortcut):
                guard format != nil else { throw A2QError("residual \(name): its input is not quantized") }
                var bodyShape = shape, bodyFormat = format
                try validate(body, shape: &bodyShape, format: &bodyFormat, depth: depth + 1, pools: &pools)
                var shortcutShape = shape, shortcutFormat = format
                if let shortcut { try validate(shortcut, shape: &shortcutShape, format: &shortcutFormat, depth: depth + 1, pools: &pools) }
                guard bodyFormat != nil, shortcutFormat != nil else {
                    throw A2QError("residual \(name): its \(bodyFormat == nil ? "body" : "shortcut") does not end in a quantize")
                }
                guard bodyShape == shortcutShape else {
                    throw A2QError("residual \(name): body gives \(describe(bodyShape)), shortcut \(describe(shortcutShape))")
                }
                shape = bodyShape
                format = nil
            }
        }
    }

    /// The checks of one layer that do not depend on its neighbours.
    func validate(_ layer: IntegerLayer) throws {
        let name = layer.name
        guard (2...16).contains(layer.weightBits) else { throw A2QError("layer \(name): weight_bits \(layer.weightBits) is outside 2...16") }
        guard (2...62).contains(layer.accumulatorBits) else {
            throw A2QError("layer \(name): accumulator width \(layer.accumulatorBits) is outside 2...62")
        }
        guard (1...16).contains(layer.input.bits) else { throw A2QError("layer \(name): input_bits \(layer.input.bits) is outside 1...16") }
        guard layer.shape.count == (layer.kind == .conv2d ? 4 : 2), layer.shape.allSatisfy({ $0 > 0 }) else {
            throw A2QError("layer \(name): weight shape \(describe(layer.shape)) is not a \(layer.kind.rawValue) shape")
        }
        if layer.kind == .conv2d {
            guard layer.shape[2] == layer.shape[3] else { throw A2QError("layer \(name): only square kernels are supported, found \(describe(layer.shape))") }
            guard layer.stride > 0, layer.padding >= 0 else {
                throw A2QError("layer \(name): stride \(layer.stride) and padding \(layer.padding) (stride must be positive, padding not negative)")
            }
        }
        guard layer.weights.count == layer.shape.reduce(1, *) else {
            throw A2QError("layer \(name): \(layer.weights.count) weights for shape \(describe(layer.shape))")
        }
        let limit = Int32((1 << (layer.weightBits - 1)) - 1)
        if let bad = layer.weights.firstIndex(where: { $0 < -limit || $0 > limit }) {
            throw A2QError("layer \(name): weight \(layer.weights[bad]) at index \(bad) does not fit the declared \(layer.weightBits)-bit narrow range ±\(limit)")
        }
        for (label, values) in [("weight_scale", layer.weightScale), ("bias", layer.bias), ("multiplier", layer.multiplier), ("offset", layer.offset)] {
            guard values.count == layer.outChannels else {
                throw A2QError("layer \(name): \(values.count) \(label) values for \(layer.outChannels) output channels")
            }
            guard values.allSatisfy(\.isFinite) else { throw A2QError("layer \(name): \(label) holds a non-finite value") }
        }
        guard layer.inputScale.isFinite, layer.inputScale > 0 else { throw A2QError("layer \(name): input scale \(layer.inputScale) is not positive") }
    }
}
