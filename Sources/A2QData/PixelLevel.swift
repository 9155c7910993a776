/// 8-bit pixel levels and the unit interval, one rule for the whole code base: a level `v` is
/// the float `v · (1/255)`, and a real value becomes a level by clamping to [0, 255] and
/// rounding half up (⌊v + 0.5⌋). The resampling filter, PSNR and images made from model outputs
/// all round this way.
public enum PixelLevel {
    /// The float scale of one level, 1/255 (the 8-bit input quantizer's scale).
    public static let unitScale: Float = 1 / 255

    /// The level of a real value on the 0…255 scale: clamped, then rounded half up; NaN is 0.
    @inlinable
    public static func level(_ value: Double) -> UInt8 {
        guard value > 0 else { return 0 }  // also NaN
        guard value < 255 else { return 255 }
        return UInt8((value + 0.5).rounded(.down))
    }

    /// The level of a value on the unit scale (a model's output, 1.0 = 255): `level(x · 255)`,
    /// computed in double.
    @inlinable
    public static func level(unit value: Float) -> UInt8 { level(Double(value) * 255) }

    /// The unit-scale float of a level, `v · (1/255)` (what the data pipelines feed a model).
    @inlinable
    public static func unit(_ level: UInt8) -> Float { Float(level) * unitScale }
}
