import A2QCore

/// An image-classification dataset of 8-bit images (`[count, channels, height, width]`,
/// channel-planar as CIFAR-10 stores them) with class labels. Pixels are unsigned 8-bit integers; the model input is `pixel / 255`,
/// exactly the 8-bit unsigned input quantizer's grid.
public struct Dataset: Sendable {
    public let images: [UInt8]
    public let labels: [UInt8]
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int
    public let classes: Int

    public init(images: [UInt8], labels: [UInt8], channels: Int = 1, height: Int, width: Int, classes: Int) throws {
        guard channels > 0, height > 0, width > 0, images.count == labels.count * channels * height * width else {
            throw A2QError("dataset: \(images.count) pixels do not make \(labels.count) images of \(channels)×\(height)×\(width)")
        }
        if let bad = labels.first(where: { Int($0) >= classes }) {
            throw A2QError("dataset: label \(bad) is outside 0..<\(classes)")
        }
        self.images = images
        self.labels = labels
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.classes = classes
    }

    /// Values per image.
    public var imageSize: Int { channels * height * width }

    /// `[channels, height, width]` of one image.
    public var imageShape: [Int] { [channels, height, width] }

    /// Throws unless the images are `channels`×`height`×`width`, what the model takes
    /// (`source` names the data in the message).
    public func requireImageSize(height: Int, width: Int, channels: Int = 1, source: String) throws {
        guard self.channels == channels, self.height == height, self.width == width else {
            throw A2QError("\(source): the images are \(self.channels)×\(self.height)×\(self.width) but the model takes \(channels)×\(height)×\(width) images",
                           remedy: "pass data of the model's input size (--data), or a model made for this data")
        }
    }

    /// The first `n` examples.
    public func prefix(_ n: Int) -> Dataset {
        let k = min(n, count)
        // Slicing a validated dataset keeps it valid.
        return Dataset(uncheckedImages: Array(images[0..<(k * imageSize)]), labels: Array(labels[0..<k]),
                       channels: channels, height: height, width: width, classes: classes)
    }

    private init(uncheckedImages: [UInt8], labels: [UInt8], channels: Int, height: Int, width: Int, classes: Int) {
        images = uncheckedImages
        self.labels = labels
        count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.classes = classes
    }

    /// Copies examples `indices` into preallocated batch buffers: `x` as `[n, C, H, W]`
    /// floats `pixel/255` and `y` as class indices. No allocation once `x` has its shape.
    public func fill<C: Collection>(_ indices: C, into x: Tensor, labels y: UnsafeMutableBufferPointer<Int32>)
    where C.Element == Int {
        let n = indices.count
        precondition(y.count >= n, "Dataset.fill: label buffer holds \(y.count), need \(n)")
        if x.shape.count != 4 || x.shape[0] != n || x.shape[1] != channels || x.shape[2] != height || x.shape[3] != width {
            x.reshape([n, channels, height, width])
        }
        let size = imageSize, scale: Float = 1 / 255
        images.withUnsafeBufferPointer { pixels in
            guard let base = pixels.baseAddress else { return }  // no images: nothing to copy
            var row = 0
            for index in indices {
                let source = base + index * size
                let destination = x.data + row * size
                for i in 0..<size { destination[i] = Float(source[i]) * scale }
                y[row] = Int32(labels[index])
                row += 1
            }
        }
    }
}
