import A2QCore

/// Super-resolution examples from decoded images: a high-resolution crop of `cropSize`² pixels
/// (the target) and its low-resolution version, the crop downscaled by `upscaleFactor` with
/// `BicubicResampler` (the input).
///
/// Examples are indexed `0..<count`; with `.random(seed:cropsPerImage:)` (training) example e
/// is crop `e mod cropsPerImage` of image `e / cropsPerImage`, so that a few images still give
/// many steps per epoch, and its position and flips are drawn from (seed, epoch, e) alone: the
/// same global example gets the same crop whichever rank fills it, so with `EpochSampler`'s
/// slices the global batches do not depend on the rank count. With `.centre` (testing) example
/// e is the centre crop of image e, the same in every epoch.
///
/// `fill` writes into preallocated tensors and allocates nothing: the crop and its
/// downscaled version go through scratch buffers owned by the dataset. That makes a dataset
/// unsafe to share between threads: give each rank (thread) its own.
public final class RestorationDataset {
    /// How examples are cut from the images.
    public enum Cropping: Sendable, Equatable {
        /// Training: `cropsPerImage` examples per image and epoch, each at a uniformly random
        /// position, flipped left–right with probability ½ and top–bottom with probability ½,
        /// independently, all drawn from (seed, epoch, example index).
        case random(seed: UInt64, cropsPerImage: Int)
        /// Testing: one example per image, its centre crop (offsets rounded down).
        case centre
    }

    /// Where one example comes from.
    public struct Placement: Sendable, Equatable {
        public let image: Int
        /// The crop's top-left pixel in the image, before flipping.
        public let x: Int
        public let y: Int
        public let flipHorizontal: Bool
        public let flipVertical: Bool

        public init(image: Int, x: Int, y: Int, flipHorizontal: Bool, flipVertical: Bool) {
            self.image = image
            self.x = x
            self.y = y
            self.flipHorizontal = flipHorizontal
            self.flipVertical = flipVertical
        }
    }

    public let images: [ImageFile]
    public let upscaleFactor: Int
    /// The high-resolution crop's side (a multiple of `upscaleFactor`).
    public let cropSize: Int
    public let cropping: Cropping
    let resampler: BicubicResampler
    let crop: UnsafeMutablePointer<UInt8>
    let small: UnsafeMutablePointer<UInt8>
    let scratch: UnsafeMutablePointer<Double>

    /// Throws when the crop is not a positive multiple of the factor, when there are no images,
    /// or when an image is smaller than the crop (naming the file).
    public init(images: [ImageFile], upscaleFactor: Int, cropSize: Int, cropping: Cropping) throws {
        guard upscaleFactor >= 1 else { throw A2QError("the upscale factor must be at least 1, not \(upscaleFactor)") }
        guard cropSize >= upscaleFactor, cropSize % upscaleFactor == 0 else {
            throw A2QError("the crop size \(cropSize) is not a positive multiple of the upscale factor \(upscaleFactor)",
                           remedy: "choose a crop size divisible by \(upscaleFactor)")
        }
        guard !images.isEmpty else { throw A2QError("no images to cut \(cropSize)×\(cropSize) crops from") }
        if case .random(_, let cropsPerImage) = cropping, cropsPerImage < 1 {
            throw A2QError("crops per image must be at least 1, not \(cropsPerImage)")
        }
        for file in images where file.image.width < cropSize || file.image.height < cropSize {
            throw A2QError("\(file.path) is \(file.image.width)×\(file.image.height), smaller than the \(cropSize)×\(cropSize) crop",
                           remedy: "choose a smaller crop size, or remove the image from the folder")
        }
        self.images = images
        self.upscaleFactor = upscaleFactor
        self.cropSize = cropSize
        self.cropping = cropping
        let low = cropSize / upscaleFactor
        resampler = BicubicResampler(inputWidth: cropSize, inputHeight: cropSize, outputWidth: low, outputHeight: low)
        crop = .allocate(capacity: Image.channels * cropSize * cropSize)
        small = .allocate(capacity: Image.channels * low * low)
        scratch = .allocate(capacity: resampler.scratchCount)
    }

    deinit {
        crop.deallocate()
        small.deallocate()
        scratch.deallocate()
    }

    /// The largest square crop, a multiple of `factor`, that every image holds (for testing on
    /// crops as large as the smallest image allows).
    public static func largestCrop(of images: [ImageFile], factor: Int) -> Int {
        precondition(factor > 0, "RestorationDataset.largestCrop: factor \(factor)")
        let side = images.map { min($0.image.width, $0.image.height) }.min() ?? 0
        return side - side % factor
    }

    /// The low-resolution side, `cropSize / upscaleFactor`.
    public var inputSize: Int { cropSize / upscaleFactor }
    /// `[3, cropSize/r, cropSize/r]`: one example's input.
    public var inputShape: [Int] { [Image.channels, inputSize, inputSize] }
    /// `[3, cropSize, cropSize]`: one example's target.
    public var targetShape: [Int] { [Image.channels, cropSize, cropSize] }

    /// Examples per epoch.
    public var count: Int {
        switch cropping {
        case .random(_, let cropsPerImage): return images.count * cropsPerImage
        case .centre: return images.count
        }
    }

    /// Where example `example` of epoch `epoch` comes from.
    public func placement(example: Int, epoch: Int) -> Placement {
        precondition(example >= 0 && example < count, "RestorationDataset: example \(example) of \(count)")
        switch cropping {
        case .centre:
            let image = images[example].image
            return Placement(image: example, x: (image.width - cropSize) / 2, y: (image.height - cropSize) / 2,
                             flipHorizontal: false, flipVertical: false)
        case .random(let seed, let cropsPerImage):
            let index = example / cropsPerImage, image = images[index].image
            var generator = Self.generator(seed: seed, epoch: epoch, example: example)
            let x = Int(generator.next() % UInt64(image.width - cropSize + 1))
            let y = Int(generator.next() % UInt64(image.height - cropSize + 1))
            let flips = generator.next()
            return Placement(image: index, x: x, y: y, flipHorizontal: flips & 1 != 0, flipVertical: flips & 2 != 0)
        }
    }

    /// The generator of one example: (seed, epoch, example) hashed word by word with
    /// SplitMix64's finaliser, so that neighbouring epochs and examples get unrelated streams.
    static func generator(seed: UInt64, epoch: Int, example: Int) -> Xoshiro256 {
        func mix(_ value: UInt64) -> UInt64 {
            var z = value &+ 0x9e37_79b9_7f4a_7c15
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        let key = mix(mix(mix(seed) ^ UInt64(bitPattern: Int64(epoch))) ^ UInt64(bitPattern: Int64(example)))
        return Xoshiro256(seed: key)
    }

    /// Writes examples `indices` of epoch `epoch` into preallocated tensors: `input` becomes
    /// `[n, 3, cropSize/r, cropSize/r]` and `target` `[n, 3, cropSize, cropSize]`, both
    /// `level/255`, the input's levels being the downscaled crop rounded to 8 bits (so the
    /// model's 8-bit input quantizer, scale 1/255, represents it exactly). Tensors already of
    /// those shapes are written in place; nothing is allocated.
    public func fill<C: Collection>(_ indices: C, epoch: Int, input: Tensor, target: Tensor) where C.Element == Int {
        let n = indices.count, side = cropSize, low = inputSize
        if input.shape != [n, Image.channels, low, low] { input.reshape([n, Image.channels, low, low]) }
        if target.shape != [n, Image.channels, side, side] { target.reshape([n, Image.channels, side, side]) }
        let cropLevels = Image.channels * side * side, lowLevels = Image.channels * low * low
        var row = 0
        for example in indices {
            let place = placement(example: example, epoch: epoch)
            cut(place)
            let targetRow = target.data + row * cropLevels
            for i in 0..<cropLevels { targetRow[i] = PixelLevel.unit(crop[i]) }
            for channel in 0..<Image.channels {
                resampler.resample(plane: crop + channel * side * side, into: small + channel * low * low, scratch: scratch)
            }
            let inputRow = input.data + row * lowLevels
            for i in 0..<lowLevels { inputRow[i] = PixelLevel.unit(small[i]) }
            row += 1
        }
    }

    /// Copies the placed crop, flipped as placed, into `crop` (`[3, cropSize, cropSize]`).
    func cut(_ placement: Placement) {
        let image = images[placement.image].image, side = cropSize
        image.pixels.withUnsafeBufferPointer { pixels in
            for channel in 0..<Image.channels {
                for row in 0..<side {
                    let sourceRow = placement.y + (placement.flipVertical ? side - 1 - row : row)
                    let source = (channel * image.height + sourceRow) * image.width + placement.x
                    let destination = crop + (channel * side + row) * side
                    if placement.flipHorizontal {
                        for column in 0..<side { destination[column] = pixels[source + side - 1 - column] }
                    } else {
                        for column in 0..<side { destination[column] = pixels[source + column] }
                    }
                }
            }
        }
    }
}
