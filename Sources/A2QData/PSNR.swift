import A2QCore
import Foundation

/// Peak signal-to-noise ratio of restored images, as the A2Q authors report it for
/// super-resolution: each output is first made an 8-bit image (`PixelLevel.level(unit:)`:
/// value · 255 clamped to [0, 255], rounded half up; the targets, `level/255`, round back to
/// their levels exactly), then per image
///
///     PSNR = 10 · log10(255² / MSE),  MSE = mean over all channels and pixels of (output − target)²
///
/// in levels, and a set's PSNR is the mean of its images' PSNRs (not the PSNR of the pooled
/// MSE). A perfect image (MSE 0) scores `maximumDecibels`, 100 dB, and so does any image whose
/// PSNR would exceed it: one 100 dB cap keeps the mean finite and the score monotone in the
/// error (above 100 dB, MSE < 255² · 10⁻¹⁰: fewer than one value in about 154,000 is off, by
/// one level).
public enum PSNR {
    /// The score of a perfect image, and the cap of every image's score.
    public static let maximumDecibels = 100.0

    /// The PSNR of one image: `output` and `target` hold the same number of unit-scale values.
    public static func decibels(output: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>) -> Double {
        precondition(output.count == target.count && !output.isEmpty,
                     "PSNR: \(output.count) output values for \(target.count) target values")
        var sum = 0.0
        for i in 0..<output.count {
            let difference = Double(PixelLevel.level(unit: output[i])) - Double(PixelLevel.level(unit: target[i]))
            sum += difference * difference
        }
        return decibels(meanSquaredError: sum / Double(output.count))
    }

    /// The PSNR of a mean squared error in levels², capped at `maximumDecibels`.
    public static func decibels(meanSquaredError: Double) -> Double {
        guard meanSquaredError > 0 else { return maximumDecibels }
        return min(maximumDecibels, 10 * log10(255 * 255 / meanSquaredError))
    }

    /// The PSNR of each image of a batch: `outputs` and `targets` are `[n, ...]` tensors of the
    /// same shape, image i being row i.
    public static func perImage(outputs: Tensor, targets: Tensor) -> [Double] {
        precondition(outputs.shape == targets.shape && outputs.shape.count >= 2,
                     "PSNR: outputs \(describe(outputs.shape)) and targets \(describe(targets.shape))")
        let n = outputs.shape[0], size = outputs.count / max(n, 1)
        return (0..<n).map { image in
            decibels(output: UnsafeBufferPointer(start: outputs.data + image * size, count: size),
                     target: UnsafeBufferPointer(start: targets.data + image * size, count: size))
        }
    }

    /// Sums per-image PSNRs over batches (and, by adding `total` and `count` over ranks, over a
    /// distributed test set); `mean` is the set's PSNR. Adding a batch allocates nothing.
    public struct Meter: Sendable {
        /// The sum of the images' PSNRs so far.
        public var total = 0.0
        /// The images so far.
        public var count = 0

        public init() {}

        /// The mean PSNR of the images added (0 before any).
        public var mean: Double { count == 0 ? 0 : total / Double(count) }

        /// Adds each image of a batch (`[n, ...]` outputs and targets of the same shape).
        public mutating func add(outputs: Tensor, targets: Tensor) {
            precondition(outputs.shape == targets.shape && outputs.shape.count >= 2,
                         "PSNR: outputs \(describe(outputs.shape)) and targets \(describe(targets.shape))")
            let n = outputs.shape[0], size = outputs.count / max(n, 1)
            for image in 0..<n {
                total += PSNR.decibels(output: UnsafeBufferPointer(start: outputs.data + image * size, count: size),
                                       target: UnsafeBufferPointer(start: targets.data + image * size, count: size))
                count += 1
            }
        }
    }
}
