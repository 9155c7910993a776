/// Resizing with Pillow's antialiased bicubic filter (`Image.resize(size, Image.BICUBIC)`,
/// which torchvision's `Resize(..., BICUBIC)` calls on PIL images, the A2Q authors' pipeline),
/// computed in double precision.
///
/// The kernel is Keys' cubic with a = −0.5 on [−2, 2]. Output pixel i of an axis is centred at
/// input coordinate c = (i + 0.5) · s, with s = input size / output size. When downscaling
/// (s > 1) the kernel is stretched by s (support 2s, argument divided by s), so that it
/// averages over the input pixels the output pixel covers; when upscaling it keeps support 2.
/// Taps run over the input pixels j with ⌊c − support + 0.5⌋ ≤ j < ⌊c + support + 0.5⌋ inside
/// the image, each weighted by the kernel at (j + 0.5 − c)/max(s, 1), and the weights are
/// divided by their sum, so that near the borders the kernel is cut off and renormalised (no
/// padding). The image is filtered along rows first, then along columns, each sum in double and
/// each result clamped to [0, 255] and rounded half up (`PixelLevel.level`), the row-filtered
/// intermediate included: Pillow keeps that intermediate as an 8-bit image, and where the
/// kernel's negative lobes overshoot (edges, noise) the clamp between the passes changes the
/// result by many levels, so it is part of the filter the authors used.
///
/// Pillow's weights are 22-bit fixed point, these are doubles: a sum within about 10⁻⁵ level of
/// a half level can round the other way (measured in `ImageResamplingTests`).
public struct BicubicResampler: Sendable {
    /// Keys' cubic convolution parameter.
    public static let a = -0.5

    /// The weights of one axis: output index i reads `count[i]` inputs from `first[i]`, with
    /// `weights[i · taps ..< i · taps + count[i]]`.
    struct Axis: Sendable {
        let inputSize: Int
        let outputSize: Int
        let taps: Int
        let first: [Int]
        let count: [Int]
        let weights: [Double]

        init(inputSize: Int, outputSize: Int) {
            precondition(inputSize > 0 && outputSize > 0, "BicubicResampler: size \(inputSize) → \(outputSize)")
            self.inputSize = inputSize
            self.outputSize = outputSize
            let scale = Double(inputSize) / Double(outputSize)
            let stretch = max(scale, 1)
            let support = 2 * stretch
            let taps = Int(support.rounded(.up)) * 2 + 1
            var first = [Int](repeating: 0, count: outputSize), count = [Int](repeating: 0, count: outputSize)
            var weights = [Double](repeating: 0, count: outputSize * taps)
            for i in 0..<outputSize {
                let centre = (Double(i) + 0.5) * scale
                let low = max(0, Int((centre - support + 0.5).rounded(.down)))
                let high = min(inputSize, Int((centre + support + 0.5).rounded(.down)))
                let n = min(high - low, taps)
                var sum = 0.0
                for k in 0..<n {
                    let w = Self.kernel((Double(low + k) + 0.5 - centre) / stretch)
                    weights[i * taps + k] = w
                    sum += w
                }
                if sum != 0 { for k in 0..<n { weights[i * taps + k] /= sum } }
                first[i] = low
                count[i] = n
            }
            self.taps = taps
            self.first = first
            self.count = count
            self.weights = weights
        }

        /// Keys' cubic convolution kernel with a = −0.5.
        static func kernel(_ x: Double) -> Double {
            let a = BicubicResampler.a, t = abs(x)
            if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
            if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
            return 0
        }
    }

    public let inputWidth: Int
    public let inputHeight: Int
    public let outputWidth: Int
    public let outputHeight: Int
    let horizontal: Axis
    let vertical: Axis

    /// A resampler from `inputWidth`×`inputHeight` to `outputWidth`×`outputHeight` (the
    /// weights are computed once, here).
    public init(inputWidth: Int, inputHeight: Int, outputWidth: Int, outputHeight: Int) {
        self.inputWidth = inputWidth
        self.inputHeight = inputHeight
        self.outputWidth = outputWidth
        self.outputHeight = outputHeight
        horizontal = Axis(inputSize: inputWidth, outputSize: outputWidth)
        vertical = Axis(inputSize: inputHeight, outputSize: outputHeight)
    }

    /// Doubles of scratch that `resample(plane:into:scratch:)` needs (the row-filtered plane,
    /// whole levels).
    public var scratchCount: Int { inputHeight * outputWidth }

    /// Resamples one channel plane (`inputHeight` rows of `inputWidth` levels) into
    /// `destination` (`outputHeight` rows of `outputWidth`), using `scratch` (at least
    /// `scratchCount` doubles). Allocates nothing.
    public func resample(plane source: UnsafePointer<UInt8>, into destination: UnsafeMutablePointer<UInt8>,
                         scratch: UnsafeMutablePointer<Double>) {
        horizontal.weights.withUnsafeBufferPointer { buffer in
            guard let weights = buffer.baseAddress else { return }
            for y in 0..<inputHeight {
                let row = source + y * inputWidth, out = scratch + y * outputWidth
                for x in 0..<outputWidth {
                    let start = horizontal.first[x], w = weights + x * horizontal.taps
                    var sum = 0.0
                    for k in 0..<horizontal.count[x] { sum += w[k] * Double(row[start + k]) }
                    out[x] = Double(PixelLevel.level(sum))
                }
            }
        }
        vertical.weights.withUnsafeBufferPointer { buffer in
            guard let weights = buffer.baseAddress else { return }
            for y in 0..<outputHeight {
                let start = vertical.first[y], w = weights + y * vertical.taps, out = destination + y * outputWidth
                for x in 0..<outputWidth {
                    var sum = 0.0
                    for k in 0..<vertical.count[y] { sum += w[k] * scratch[(start + k) * outputWidth + x] }
                    out[x] = PixelLevel.level(sum)
                }
            }
        }
    }

    /// `image` resized (the image must be `inputWidth`×`inputHeight`).
    public func resize(_ image: Image) -> Image {
        precondition(image.width == inputWidth && image.height == inputHeight,
                     "BicubicResampler: a \(image.width)×\(image.height) image for a \(inputWidth)×\(inputHeight) resampler")
        var out = [UInt8](repeating: 0, count: Image.channels * outputWidth * outputHeight)
        var scratch = [Double](repeating: 0, count: scratchCount)
        image.pixels.withUnsafeBufferPointer { sourceBuffer in
            out.withUnsafeMutableBufferPointer { destinationBuffer in
                scratch.withUnsafeMutableBufferPointer { scratchBuffer in
                    // Images are never empty (Image's initialiser), so the addresses exist.
                    guard let source = sourceBuffer.baseAddress, let destination = destinationBuffer.baseAddress,
                          let work = scratchBuffer.baseAddress else { return }
                    for channel in 0..<Image.channels {
                        resample(plane: source + channel * inputWidth * inputHeight,
                                 into: destination + channel * outputWidth * outputHeight, scratch: work)
                    }
                }
            }
        }
        return Image(width: outputWidth, height: outputHeight, pixels: out)
    }

    /// `image` resized to `width`×`height`.
    public static func resize(_ image: Image, width: Int, height: Int) -> Image {
        BicubicResampler(inputWidth: image.width, inputHeight: image.height, outputWidth: width, outputHeight: height)
            .resize(image)
    }

    /// The low-resolution image of `image` for upscale factor `factor`: the image cropped to
    /// multiples of `factor` (`Image.croppedToMultiple(of:)`), then downscaled by `factor`.
    public static func downscale(_ image: Image, factor: Int) -> Image {
        let cropped = image.croppedToMultiple(of: factor)
        return resize(cropped, width: cropped.width / factor, height: cropped.height / factor)
    }

    /// `image` upscaled by `factor` (the "bicubic" baseline of super-resolution tables).
    public static func upscale(_ image: Image, factor: Int) -> Image {
        precondition(factor > 0, "BicubicResampler.upscale: factor \(factor)")
        return resize(image, width: image.width * factor, height: image.height * factor)
    }
}
