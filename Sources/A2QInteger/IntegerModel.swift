import A2QCore
import A2QQuant

/// One weight layer of an integer model: integer weights and everything needed to run it
/// with a P-bit accumulator and requantise its output.
public struct IntegerLayer: Sendable {
    public enum Kind: String, Sendable, Codable { case linear, conv2d }
    public var name: String
    public var kind: Kind
    /// `[out, in]` or `[out, in/groups, kh, kw]`.
    public var shape: [Int]
    public var stride: Int = 1
    public var padding: Int = 0
    /// A convolution's groups (1 for linear layers): output channel `o` reads only the
    /// `shape[1]` input channels of its group `o / (out/groups)`.
    public var groups: Int = 1
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
    /// Multi-stage accumulation: nil sums each dot product in one `accumulatorBits`-bit
    /// register. Otherwise each output channel's K products are cut into tiles of this many
    /// consecutive weight indices (row-major `[in/groups, kh, kw]`; the last tile may be
    /// shorter), each tile is summed in its own `accumulatorBits`-bit register, and the tile
    /// sums are added, tile by tile, in an `outerAccumulatorBits`-bit register
    /// (docs/CHECKPOINT.md, "Tiles"). Always below K (a tile of K or more is the whole dot product).
    public var accumulatorTile: Int? = nil
    /// The outer register's width of a tiled layer (unused without tiles).
    public var outerAccumulatorBits: Int = 32

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
    /// K, the inputs of one output channel's dot product (`(in/groups)·kh·kw` for a conv).
    public var fanIn: Int { shape.dropFirst().reduce(1, *) }
    /// The input channels (features of a linear layer) the layer takes.
    public var inChannels: Int { shape[1] * groups }
    /// The inputs one tile register sums (K without tiles).
    public var tileLength: Int { min(accumulatorTile ?? fanIn, fanIn) }
    /// Tiles per output channel (1 without tiles).
    public var tileCount: Int { (fanIn + tileLength - 1) / tileLength }

    /// Exact per-channel (and per-tile) facts of the integer weights.
    public var report: LayerAccumulatorReport {
        LayerAccumulatorReport(integers: weights, outChannels: outChannels, input: input, accumulatorBits: accumulatorBits,
                               tile: accumulatorTile, outerAccumulatorBits: outerAccumulatorBits)
    }
}

/// The window of an average pool over `kernel × kernel` windows at `stride`, with `padding`
/// zeros on every side that count in the divisor (`kernel²`, PyTorch's `count_include_pad`),
/// floor mode.
public struct PoolWindow: Sendable, Equatable {
    public var kernel: Int
    public var stride: Int
    public var padding: Int

    public init(kernel: Int, stride: Int, padding: Int) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// The output height (or width) for an input of `size`: `(size + 2·padding − kernel) / stride + 1`.
    public func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }

    /// The input rows (or columns) output row `index` covers, clipped to `0 ..< size` (the rest
    /// of its window is padding).
    public func span(_ index: Int, size: Int) -> Range<Int> {
        let start = index * stride - padding
        return max(start, 0)..<max(min(start + kernel, size), max(start, 0))
    }

    /// The most input integers (not padding) one window adds on a `height × width` input:
    /// `kernel²` whenever some window lies inside the input, fewer when every window overlaps
    /// the padding. Its worst case is this many times the input format's extreme levels.
    public func largestCount(height: Int, width: Int) -> Int {
        func largest(_ size: Int) -> Int { (0..<max(outputSize(size), 0)).map { span($0, size: size).count }.max() ?? 0 }
        return largest(height) * largest(width)
    }
}

/// An average pool's accumulator: per image and channel (and, for a window pool, per output
/// position), the sum of at most `count` integers of `input` in an `accumulatorBits`-bit
/// register. A global pool (`window` nil) sums the H·W integers of each channel.
public struct PoolAccumulator: Sendable, Equatable {
    public var name: String
    public var accumulatorBits: Int
    public var input: InputFormat
    public var channels: Int
    /// The most integers one sum adds: H·W of the pool's input for a global pool, the window's
    /// `PoolWindow.largestCount` for a window pool.
    public var count: Int
    /// The window of a window pool (`avgpool`); nil for a global pool.
    public var window: PoolWindow?

    public init(name: String, accumulatorBits: Int, input: InputFormat, channels: Int, count: Int, window: PoolWindow? = nil) {
        self.name = name
        self.accumulatorBits = accumulatorBits
        self.input = input
        self.channels = channels
        self.count = count
        self.window = window
    }
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

/// A standalone integer network (what `a2q export` writes and the integer engine runs): its
/// ops in execution order (`IntegerOperation`; a residual block nests its branches, so the list
/// is a tree of two-way branches that join at an add).
public struct IntegerModel: Sendable {
    public var model: String
    /// A classifier's class count (its output is `[classes]` scores); 0 for an image-restoration
    /// model, whose output is an image `[C, H·r, W·r]` of integers: the pixels.
    public var classes: Int
    /// `[channels, height, width]` of one input image.
    public var inputShape: [Int]
    public var ops: [any IntegerOperation]

    /// Every op, nested ones included, in execution order (a block's body before its shortcut).
    public var flattenedOps: [any IntegerOperation] { ops.flatMap(\.flattened) }

    /// The weight layers, in execution order (a block's body before its shortcut).
    public var layers: [IntegerLayer] {
        accumulators.compactMap { if case .layer(let layer) = $0 { return layer } else { return nil } }
    }

    /// Every accumulator of the model in execution order (a block's body before its shortcut):
    /// each weight layer's dot products and each average pool's sums (global or window). This
    /// one list orders `verify`'s verdicts, the engine's overflow counts and `eval --outputs`.
    public var accumulators: [Accumulator] {
        var flow = IntegerFlow(shape: inputShape, format: nil)
        try? flow.validate(ops)  // valid since init
        return flow.accumulators
    }

    /// `[classes]`, or a restoration model's output image `[C, H·r, W·r]`.
    public var outputShape: [Int] {
        var flow = IntegerFlow(shape: inputShape, format: nil)
        try? flow.validate(ops)  // valid since init
        return flow.shape
    }

    /// The same model for inputs of another height and width (a restoration model on a whole
    /// image; its ops are size-agnostic); validated again.
    public func resized(height: Int, width: Int) throws -> IntegerModel {
        try IntegerModel(model: model, classes: classes, inputShape: [inputShape[0], height, width], ops: ops)
    }

    /// The average pools (global and window), in execution order, with the facts behind their worst case.
    public var pools: [PoolAccumulator] {
        accumulators.compactMap { if case .pool(let pool) = $0 { return pool } else { return nil } }
    }

    public init(model: String, classes: Int, inputShape: [Int], ops: [any IntegerOperation]) throws {
        self.model = model
        self.classes = classes
        self.inputShape = inputShape
        self.ops = ops
        try validate()
    }

    /// Checks everything the engine relies on, before any arithmetic with the values: each
    /// op's own rule (formats and scales in range, weights fit M bits, each layer's input format
    /// is the previous quantizer's, per-channel vectors finite with one entry per channel,
    /// strides and kernels positive, P supported), shapes that chain to `classes` scores, and
    /// unique layer names.
    public func validate() throws {
        guard (0...65536).contains(classes) else { throw A2QError("the model declares \(classes) classes") }
        guard (1...3).contains(inputShape.count), inputShape.allSatisfy({ (1...4096).contains($0) }),
              inputShape.reduce(1, *) <= 1 << 24 else {
            throw A2QError("the input shape \(describe(inputShape)) is not a valid image shape")
        }
        var flow = IntegerFlow(shape: inputShape, format: nil)
        try flow.validate(ops)
        if classes > 0 {
            guard flow.shape == [classes] else { throw A2QError("the model ends in \(describe(flow.shape)), not \(classes) class scores") }
        } else {
            guard inputShape.count == 3, flow.shape.count == 3, flow.shape[0] == inputShape[0], flow.shape[1] % inputShape[1] == 0,
                  flow.shape[1] / inputShape[1] == flow.shape[2] / inputShape[2], flow.shape[2] % inputShape[2] == 0 else {
                throw A2QError("the restoration model ends in \(describe(flow.shape)), not an enlarged image of its input \(describe(inputShape))")
            }
            guard let format = flow.format, !format.signed else {
                throw A2QError("the restoration model does not end in unsigned integers (a quantize op): its output must be the image's pixels")
            }
        }
        var names = Set<String>()
        for accumulator in flow.accumulators where !names.insert(accumulator.name).inserted {
            throw A2QError("two layers are named \(accumulator.name)")
        }
    }
}

extension IntegerLayer {
    /// The checks of one layer that do not depend on its neighbours.
    public func validate() throws {
        let layer = self
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
        guard layer.groups >= 1, layer.groups == 1 || layer.kind == .conv2d, layer.outChannels % layer.groups == 0,
              layer.shape[1] <= Int.max / layer.groups else {
            throw A2QError("layer \(name): groups \(layer.groups) does not divide its \(layer.outChannels) output channels (or the layer is not a convolution)")
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
        if let tile = layer.accumulatorTile {
            guard (1..<layer.fanIn).contains(tile) else {
                throw A2QError("layer \(name): accumulator tile \(tile) is not between 1 and its \(layer.fanIn - 1) (K − 1)")
            }
            guard (2...62).contains(layer.outerAccumulatorBits), layer.outerAccumulatorBits >= layer.accumulatorBits else {
                throw A2QError("layer \(name): outer accumulator width \(layer.outerAccumulatorBits) is outside \(layer.accumulatorBits)...62 (at least the tile register's)")
            }
        }
    }
}
