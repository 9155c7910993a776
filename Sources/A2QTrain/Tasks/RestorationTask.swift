import A2QCore
import A2QData
import A2QNN

/// Image restoration (super-resolution): pairs of a low-resolution input and its
/// high-resolution original (`RestorationDataset`), mean squared error on `[0, 1]` pixels, and
/// PSNR on outputs rounded to 8 bits, per image then averaged.
public final class RestorationTask: TrainingTask {
    public let train: RestorationDataset
    public let test: RestorationDataset
    private let target = Tensor(shape: [0])
    private let squaredError = MeanSquaredError()

    public init(train: RestorationDataset, test: RestorationDataset) {
        self.train = train
        self.test = test
    }

    /// Loads the images of `folder` (BSD300 layout or a flat folder, `ImageFolder`) into a
    /// training set of random `cropSize` crops (`cropsPerImage` per image and epoch, seeded)
    /// and a test set of centre crops, as large as the smallest test image allows (a multiple
    /// of `factor`).
    public static func load(folder: String, factor: Int, cropSize: Int, cropsPerImage: Int, seed: UInt64) throws -> RestorationTask {
        let (trainImages, testImages) = try RestorationData.load(folder: folder)
        let train = try RestorationDataset(images: trainImages, upscaleFactor: factor, cropSize: cropSize,
                                           cropping: .random(seed: seed, cropsPerImage: cropsPerImage))
        let testCrop = RestorationDataset.largestCrop(of: testImages, factor: factor)
        let test = try RestorationDataset(images: testImages, upscaleFactor: factor, cropSize: testCrop, cropping: .centre)
        return RestorationTask(train: train, test: test)
    }

    /// For evaluation only: the test images of `folder` (the first `limit`), as `load` cuts
    /// them; no training image is read (the training set is the test set, unused).
    public static func evaluation(folder: String, factor: Int, limit: Int? = nil) throws -> RestorationTask {
        let images = try RestorationData.loadTest(folder: folder)
        let testCrop = RestorationDataset.largestCrop(of: images, factor: factor)
        let test = try RestorationDataset(images: Array(images.prefix(limit ?? images.count)), upscaleFactor: factor,
                                          cropSize: testCrop, cropping: .centre)
        return RestorationTask(train: test, test: test)
    }

    public var kind: TaskKind { .restoration }
    public var metricName: String { TaskKind.restoration.metricName }
    public var trainCount: Int { train.count }
    public var testCount: Int { test.count }
    public var inputShape: [Int] { train.inputShape }
    public var outputShape: [Int] { train.targetShape }
    public var classes: Int { 0 }

    public func fillTraining(_ indices: ArraySlice<Int>, epoch: Int, input: Tensor) {
        train.fill(indices, epoch: epoch, input: input, target: target)
    }

    public func fillTest(_ range: Range<Int>, input: Tensor) {
        test.fill(range, epoch: 0, input: input, target: target)
    }

    public func loss(_ output: Tensor) -> Float { squaredError.forward(output, target: target) }

    public var lossGradient: Tensor { squaredError.backward() }

    public func metricSum(_ output: Tensor) -> Double {
        precondition(output.shape == target.shape, "RestorationTask: output \(describe(output.shape)) for targets \(describe(target.shape))")
        let n = output.shape[0], size = output.count / max(n, 1)
        var sum = 0.0
        for image in 0..<n {
            sum += PSNR.decibels(output: UnsafeBufferPointer(start: output.data + image * size, count: size),
                                 target: UnsafeBufferPointer(start: target.data + image * size, count: size))
        }
        return sum
    }

    public func format(metric: Double) -> String { String(format: "%.2f dB", metric) }

    /// The baseline every model must beat: the test inputs upscaled by `BicubicResampler` (the
    /// filter that made them), rounded to 8 bits, against the originals; PSNR per image, averaged.
    public func bicubicPSNR() -> Double {
        let input = Tensor(shape: [0])
        let (low, high) = (test.inputSize, test.cropSize)
        let upscale = BicubicResampler(inputWidth: low, inputHeight: low, outputWidth: high, outputHeight: high)
        var levels = [UInt8](repeating: 0, count: low * low), upscaled = [UInt8](repeating: 0, count: high * high)
        var scratch = [Double](repeating: 0, count: upscale.scratchCount)
        let output = Tensor(shape: [1, Image.channels, high, high])
        var total = 0.0
        for example in 0..<test.count {
            fillTest(example..<(example + 1), input: input)
            for c in 0..<Image.channels {
                for i in 0..<(low * low) { levels[i] = UInt8((input[c * low * low + i] * 255).rounded()) }
                levels.withUnsafeBufferPointer { source in
                    upscaled.withUnsafeMutableBufferPointer { destination in
                        scratch.withUnsafeMutableBufferPointer { buffer in
                            guard let s = source.baseAddress, let d = destination.baseAddress, let b = buffer.baseAddress else { return }
                            upscale.resample(plane: s, into: d, scratch: b)
                        }
                    }
                }
                for i in 0..<(high * high) { output.data[c * high * high + i] = Float(upscaled[i]) / 255 }
            }
            total += metricSum(output)
        }
        return total / Double(max(test.count, 1))
    }

    /// The last filled batch's high-resolution targets.
    public var targets: Tensor { target }
}
