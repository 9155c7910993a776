import A2QCheckpoint
import A2QCore
import A2QQuant

/// The integer view of one weight layer: the one place where a quantizer's integers are read
/// (checkpoints, the HDF5/QONNX/ONNX exports, `inspect`, `quantize` and the per-epoch layer
/// statistics all go through it), and the one writer of the per-layer integer datasets and
/// attributes that checkpoints and exports share.
extension IntegerLayer {
    /// Runs `quantizer` forward at `parameters` and collects the layer's integers, weight
    /// scales, the requantisation without BatchNorm (`multiplier = s_w · input_scale`,
    /// `offset = bias`) and what the accumulator analysis needs. A quantizer whose values do
    /// not fit its integers (non-finite or out-of-range weights) throws, naming the layer.
    public init(quantizer: WeightQuantizer, name: String, kind: Kind, parameters: ParameterStore, input: InputFormat,
                inputScale: Float, bias: [Float]?, stride: Int = 1, padding: Int = 0, groups: Int = 1) throws {
        _ = quantizer.forward(parameters)
        let integers: [Int32]
        do { integers = try quantizer.integerWeights() } catch let error as A2QError {
            throw A2QError("layer \(name): \(error.problem)", remedy: error.remedy)
        }
        let offset = bias ?? [Float](repeating: 0, count: quantizer.outChannels)
        self.init(name: name, kind: kind, shape: quantizer.weight.shape, weights: integers, quantizer: quantizer.spec.kind.rawValue,
                  weightBits: quantizer.spec.weightBits, accumulatorBits: quantizer.spec.accumulatorBits, input: input,
                  inputScale: inputScale, weightScale: quantizer.scales, bias: offset,
                  multiplier: quantizer.scales.map { $0 * inputScale }, offset: offset,
                  l1Bound: quantizer.bound.isFinite ? quantizer.bound : nil,
                  rounding: quantizer.spec.kind.isAccumulatorAware ? "toward_zero" : "nearest", foldedBatchNorm: nil)
        self.stride = stride
        self.padding = padding
        self.groups = groups
        if quantizer.tileCount > 1 {
            accumulatorTile = quantizer.tileLength
            outerAccumulatorBits = quantizer.spec.outerAccumulatorBits ?? 32
        }
    }

    /// Writes the integer view into a layer's group: `weight_int`, `l1_norm`, `acc_min`,
    /// `acc_max`, `p_min`, `weight_scale`, and the attributes `quantizer`, `weight_bits`,
    /// `input_bits`, `input_signed`, `input_scale`, `accumulator_bits`, `l1_bound`, `rounding`,
    /// `narrow_range`, `sparsity`, `overflow_free`, and for a tiled layer `accumulator_tile`,
    /// `outer_accumulator_bits` and the per-tile datasets (docs/CHECKPOINT.md).
    public func writeIntegerView(to group: HDF5Group) throws {
        let report = self.report
        try report.write(to: group, shape: shape, weightBits: weightBits)
        try group.write("weight_scale", weightScale, shape: [outChannels])
        try group.setAttribute("quantizer", quantizer)
        try group.setAttribute("weight_bits", weightBits)
        try group.setAttribute("input_bits", input.bits)
        try group.setAttribute("input_signed", input.signed ? 1 : 0)
        try group.setAttribute("input_scale", Double(inputScale))
        try group.setAttribute("accumulator_bits", accumulatorBits)
        try group.setAttribute("l1_bound", l1Bound ?? -1)
        try group.setAttribute("rounding", rounding)
        try group.setAttribute("narrow_range", 1)
        try group.setAttribute("sparsity", report.sparsity)
        try group.setAttribute("overflow_free", report.overflowFree ? 1 : 0)
        if let tile = accumulatorTile {
            try group.setAttribute("accumulator_tile", tile)
            try group.setAttribute("outer_accumulator_bits", outerAccumulatorBits)
        }
    }
}
