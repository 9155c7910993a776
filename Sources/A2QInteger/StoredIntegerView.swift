import A2QCheckpoint
import A2QCore

/// Reading back the integer view that checkpoints and exports store beside each quantized layer
/// (`writeIntegerView`): what a user reads with h5py as a layer's integer weights and
/// accumulator facts must be what a2q computes, so a file whose view was altered is refused
/// instead of shown or used.
extension IntegerLayer {
    /// The weight quantizers a2q writes, with the rounding each uses (docs/CHECKPOINT.md).
    public static let roundingOfQuantizer = ["qat": "nearest", "a2q": "toward_zero", "a2q+": "toward_zero"]

    /// The element type a2q stores `weight_int` in for M-bit weights: int8 for M ≤ 8, else int16.
    public static func weightStorage(bits: Int) -> HDF5ElementType { bits <= 8 ? .int8 : .int16 }

    /// Checks that `group` holds exactly this layer's integer view, as `writeIntegerView` writes
    /// it: `weight_int` (int8 for M ≤ 8, else int16, in this layer's shape) equal to `weights`;
    /// `weight_scale` (float32 `[out]`) equal to `weightScale`; `l1_norm`, `acc_min`, `acc_max`
    /// (int64 `[out]`) and `p_min` (int32 `[out]`) equal to what the integer weights give; and the
    /// attributes `quantizer`, `weight_bits`, `input_bits`, `input_signed`, `input_scale`,
    /// `accumulator_bits`, `l1_bound`, `rounding`, `narrow_range` (1), `sparsity` and
    /// `overflow_free` equal to this layer's. Also checks the layer itself: a quantizer a2q
    /// knows with its rounding, an L1 bound that is −1 (none) or positive and that every
    /// channel's `Σ|q|` respects.
    ///
    /// - Parameters:
    ///   - group: the layer's group in an open file.
    ///   - weightsFrom: what `weights` and `weightScale` were computed from, for messages (a
    ///     checkpoint: "the layer's parameters quantize to").
    ///   - remedy: what the user can do when a stored value differs.
    public func checkStoredView(in group: HDF5Group, weightsFrom: String, remedy: String) throws {
        let location = "\(group.path):\(group.groupPath)"
        guard let expectedRounding = Self.roundingOfQuantizer[quantizer] else {
            throw A2QError("\(location): quantizer '\(quantizer)' is not one a2q writes (qat, a2q, a2q+)", remedy: remedy)
        }
        guard rounding == expectedRounding else {
            throw A2QError("\(location): rounding '\(rounding)' does not go with quantizer \(quantizer) (which rounds \(expectedRounding))",
                           remedy: remedy)
        }
        let report = self.report
        if let bound = l1Bound {
            guard bound.isFinite, bound > 0 else {
                throw A2QError("\(location): l1_bound \(bound) is neither -1 (unconstrained) nor a positive bound", remedy: remedy)
            }
            if let index = report.tileL1Norms.firstIndex(where: { Double($0) > bound }) {
                let place = report.tile == nil ? "output channel \(index)" : "tile \(index % report.tileCount) of output channel \(index / report.tileCount)"
                throw A2QError("\(location): \(place) has Σ|q| = \(report.tileL1Norms[index]), above the layer's l1_bound \(bound)",
                               remedy: remedy)
            }
        }

        /// Reads a dataset that must be stored as `stored` in `shape`.
        func read<T: HDF5Element>(_ name: String, as: T.Type, stored: HDF5ElementType, shape: [Int],
                                  maxElements: Int = HDF5Group.defaultMaxElements) throws -> [T] {
            let info = try group.datasetInfo(name)
            guard info.shape == shape else {
                throw A2QError("\(location)/\(name) has shape \(describe(info.shape)), but the layer's \(shape.count == 1 ? "output channels give" : "weights have") shape \(describe(shape))",
                               remedy: remedy)
            }
            guard info.type == stored else {
                throw A2QError("\(location)/\(name) holds \(info.type.map { "\($0)" } ?? "unknown") values; a2q stores \(stored) values there",
                               remedy: remedy)
            }
            return try group.read(name, as: T.self, shape: shape.map { $0 }, maxElements: maxElements).values
        }
        /// Refuses `stored` unless it equals `expected` element for element (bitwise for floats).
        func compare<T: Equatable>(_ name: String, _ stored: [T], _ expected: [T], what: String, unit: String) throws {
            guard stored != expected else { return }
            let differing = zip(stored, expected).filter { $0 != $1 }.count
            let first = stored.indices.first { stored[$0] != expected[$0] } ?? 0
            throw A2QError("\(location)/\(name) is not what \(what): \(differing) of \(expected.count) values differ (first at \(unit) \(first): stored \(stored[first]), computed \(expected[first]))",
                           remedy: remedy)
        }
        let channels = [outChannels]
        let storedWeights: [Int32] = try read("weight_int", as: Int32.self, stored: Self.weightStorage(bits: weightBits), shape: shape,
                                              maxElements: IntegerLayer.maxStoredWeights)
        try compare("weight_int", storedWeights, weights, what: weightsFrom, unit: "flat index")
        let storedScales: [Float] = try read("weight_scale", as: Float.self, stored: .float32, shape: channels)
        try compare("weight_scale", storedScales.map(ExactFloat.init), weightScale.map(ExactFloat.init), what: weightsFrom, unit: "channel")
        let derived = "the integer weights give"
        try compare("l1_norm", try read("l1_norm", as: Int64.self, stored: .int64, shape: channels), report.l1Norms, what: derived, unit: "channel")
        try compare("acc_min", try read("acc_min", as: Int64.self, stored: .int64, shape: channels), report.minimums, what: derived, unit: "channel")
        try compare("acc_max", try read("acc_max", as: Int64.self, stored: .int64, shape: channels), report.maximums, what: derived, unit: "channel")
        try compare("p_min", try read("p_min", as: Int32.self, stored: .int32, shape: channels), report.minimumBits.map { Int32($0) },
                    what: derived, unit: "channel")
        if report.tile != nil {
            let tiles = [outChannels, report.tileCount]
            try compare("tile_acc_min", try read("tile_acc_min", as: Int64.self, stored: .int64, shape: tiles), report.tileMinimums,
                        what: derived, unit: "flat tile")
            try compare("tile_acc_max", try read("tile_acc_max", as: Int64.self, stored: .int64, shape: tiles), report.tileMaximums,
                        what: derived, unit: "flat tile")
            try compare("tile_p_min", try read("tile_p_min", as: Int32.self, stored: .int32, shape: tiles),
                        report.tileMinimumBits.map { Int32($0) }, what: derived, unit: "flat tile")
        }

        /// Refuses an attribute whose stored value is not `expected`.
        func attribute<T: Equatable>(_ name: String, _ stored: T, _ expected: T, what: String) throws {
            guard stored != expected else { return }
            throw A2QError("attribute \(location)@\(name) = \(stored) is not what \(what) (\(expected))", remedy: remedy)
        }
        let layer = "the layer's"
        try attribute("quantizer", try group.stringAttribute("quantizer"), quantizer, what: "\(layer) quantizer is")
        try attribute("weight_bits", try group.intAttribute("weight_bits"), weightBits, what: "\(layer) M is")
        try attribute("input_bits", try group.intAttribute("input_bits"), input.bits, what: "\(layer) input format has")
        try attribute("input_signed", try group.intAttribute("input_signed"), input.signed ? 1 : 0, what: "\(layer) input format has")
        try attribute("input_scale", try group.doubleAttribute("input_scale").bitPattern, Double(inputScale).bitPattern,
                      what: "\(layer) input quantizer's scale is (bit pattern)")
        try attribute("accumulator_bits", try group.intAttribute("accumulator_bits"), accumulatorBits, what: "\(layer) P is")
        try attribute("l1_bound", try group.doubleAttribute("l1_bound"), l1Bound ?? -1, what: "\(layer) L1 bound is")
        try attribute("rounding", try group.stringAttribute("rounding"), rounding, what: "\(layer) quantizer rounds")
        try attribute("narrow_range", try group.intAttribute("narrow_range"), 1, what: "a2q writes (narrow-range integers)")
        try attribute("sparsity", try group.doubleAttribute("sparsity"), report.sparsity, what: "the integer weights give")
        try attribute("overflow_free", try group.intAttribute("overflow_free"), report.overflowFree ? 1 : 0,
                      what: "the integer weights' worst case against P gives")
        let storedTile = group.hasAttribute("accumulator_tile") ? try group.intAttribute("accumulator_tile") : 0
        try attribute("accumulator_tile", storedTile, accumulatorTile ?? 0, what: "\(layer) tile is (0: none)")
        if accumulatorTile != nil {
            try attribute("outer_accumulator_bits", try group.intAttribute("outer_accumulator_bits"), outerAccumulatorBits,
                          what: "\(layer) outer register is")
        }
    }

    /// The most integer weights one layer may store (2^26).
    public static let maxStoredWeights = 1 << 26
}

/// A float compared by its bits (so NaN differs from everything, and −0 from 0), shown as a number.
private struct ExactFloat: Equatable, CustomStringConvertible {
    let value: Float
    init(_ value: Float) { self.value = value }
    static func == (a: ExactFloat, b: ExactFloat) -> Bool { a.value.bitPattern == b.value.bitPattern }
    var description: String { "\(value)" }
}
