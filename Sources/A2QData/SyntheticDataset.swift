import A2QCore

/// A small, deterministic, learnable stand-in for Fashion-MNIST (for tests and quick runs):
/// each class is a fixed pattern of a few bright rectangles; each example is its class
/// pattern at a random brightness and offset of ±1 pixel, plus noise, as 8-bit pixels.
public enum SyntheticDataset {
    /// Makes `count` examples of `height × width` over `classes` classes from `seed`.
    public static func make(count: Int, classes: Int = 10, height: Int = 28, width: Int = 28,
                            seed: UInt64) -> Dataset {
        var patternGenerator = Xoshiro256(seed: 0x5eed_0000 &+ UInt64(classes))
        var patterns = [[Float]](repeating: [Float](repeating: 0, count: height * width), count: classes)
        for c in 0..<classes {
            for _ in 0..<3 {
                let h = 3 + Int(patternGenerator.next() % UInt64(max(height / 3, 1)))
                let w = 3 + Int(patternGenerator.next() % UInt64(max(width / 3, 1)))
                let top = Int(patternGenerator.next() % UInt64(max(height - h, 1)))
                let left = Int(patternGenerator.next() % UInt64(max(width - w, 1)))
                for i in top..<min(top + h, height) {
                    for j in left..<min(left + w, width) { patterns[c][i * width + j] = 1 }
                }
            }
        }
        var generator = Xoshiro256(seed: seed)
        var images = [UInt8](repeating: 0, count: count * height * width)
        var labels = [UInt8](repeating: 0, count: count)
        for n in 0..<count {
            let c = Int(generator.next() % UInt64(classes))
            labels[n] = UInt8(c)
            let brightness = generator.uniform(140, 255)
            let dy = Int(generator.next() % 3) - 1, dx = Int(generator.next() % 3) - 1
            for i in 0..<height {
                for j in 0..<width {
                    let si = i - dy, sj = j - dx
                    let on = si >= 0 && si < height && sj >= 0 && sj < width ? patterns[c][si * width + sj] : 0
                    let value = on * brightness + generator.uniform(0, 60)
                    images[(n * height + i) * width + j] = UInt8(min(max(value, 0), 255))
                }
            }
        }
        // Built consistently above: labels < classes and sizes match.
        guard let dataset = try? Dataset(images: images, labels: labels, height: height, width: width, classes: classes) else {
            preconditionFailure("SyntheticDataset: inconsistent construction")
        }
        return dataset
    }
}
