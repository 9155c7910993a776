import A2QCore
import A2QData
import Foundation
import Testing

/// Images of random levels with a recognisable offset per image.
private func noiseImages(_ sizes: [(Int, Int)], seed: UInt64) -> [ImageFile] {
    var generator = Xoshiro256(seed: seed)
    return sizes.enumerated().map { index, size in
        let pixels = (0..<(3 * size.0 * size.1)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        return ImageFile(path: "/images/\(index).png", image: Image(width: size.0, height: size.1, pixels: pixels))
    }
}

@Suite("Restoration data: crops, flips, the low-resolution input, determinism and sharding")
struct ImageRestorationDatasetTests {
    let images = noiseImages([(40, 31), (33, 45), (24, 24)], seed: 5)

    @Test("each example's target is its placed crop, flipped as placed, and its input that crop downscaled by BicubicResampler, both level/255")
    func examplesAreCropsAndTheirDownscale() throws {
        let dataset = try RestorationDataset(images: images, upscaleFactor: 3, cropSize: 12, cropping: .random(seed: 9, cropsPerImage: 7))
        #expect(dataset.count == 21 && dataset.inputShape == [3, 4, 4] && dataset.targetShape == [3, 12, 12])
        let input = Tensor(shape: [1]), target = Tensor(shape: [1])
        let examples = Array(0..<dataset.count)
        dataset.fill(examples, epoch: 2, input: input, target: target)
        #expect(input.shape == [21, 3, 4, 4] && target.shape == [21, 3, 12, 12])
        var flips = Set<[Bool]>()
        for example in examples {
            let place = dataset.placement(example: example, epoch: 2)
            #expect(place.image == example / 7)
            flips.insert([place.flipHorizontal, place.flipVertical])
            var crop = images[place.image].image.cropped(x: place.x, y: place.y, width: 12, height: 12)
            let original = crop
            for c in 0..<3 {
                for y in 0..<12 {
                    for x in 0..<12 {
                        crop[c, y, x] = original[c, place.flipVertical ? 11 - y : y, place.flipHorizontal ? 11 - x : x]
                    }
                }
            }
            let targetLevels = (0..<(3 * 144)).map { PixelLevel.level(unit: target.data[example * 3 * 144 + $0]) }
            #expect(targetLevels == crop.pixels, "example \(example): target is not the placed crop")
            #expect((0..<(3 * 144)).allSatisfy { target.data[example * 3 * 144 + $0] == PixelLevel.unit(crop.pixels[$0]) })
            let low = BicubicResampler.resize(crop, width: 4, height: 4)
            #expect((0..<48).allSatisfy { input.data[example * 48 + $0] == PixelLevel.unit(low.pixels[$0]) },
                    "example \(example): input is not the downscaled crop")
        }
        #expect(flips.count == 4, "flip combinations seen: \(flips)")
    }

    @Test("same seed and epoch: the same batch; another epoch or seed: other crops; test mode: centre crops, the same every epoch")
    func deterministic() throws {
        let make = { (seed: UInt64) in
            try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 16, cropping: .random(seed: seed, cropsPerImage: 5))
        }
        let a = try make(1), b = try make(1), c = try make(2)
        let batch = [3, 14, 0, 7, 9, 11]
        func filled(_ dataset: RestorationDataset, epoch: Int) -> ([Float], [Float]) {
            let input = Tensor(shape: [1]), target = Tensor(shape: [1])
            dataset.fill(batch.filter { $0 < dataset.count }, epoch: epoch, input: input, target: target)
            return (input.array, target.array)
        }
        #expect(filled(a, epoch: 0) == filled(b, epoch: 0))
        #expect(filled(a, epoch: 0).1 != filled(a, epoch: 1).1)
        #expect(filled(a, epoch: 0).1 != filled(c, epoch: 0).1)
        let placements = (0..<15).map { a.placement(example: $0, epoch: 0) }
        #expect(Set(placements.map { [$0.x, $0.y] }).count >= 12, "crop positions repeat: \(placements)")

        let test = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 16, cropping: .centre)
        #expect(test.count == 3)
        #expect(test.placement(example: 1, epoch: 0) == .init(image: 1, x: 8, y: 14, flipHorizontal: false, flipVertical: false))
        #expect(filled(test, epoch: 0) == filled(test, epoch: 5))
        #expect(RestorationDataset.largestCrop(of: images, factor: 5) == 20)
    }

    @Test("with EpochSampler, ranks 0 and 1 of 2 fill exactly the halves of the global batch rank 0 of 1 fills, every batch of an epoch")
    func shardsLikeClassification() throws {
        let dataset = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 10, cropping: .random(seed: 4, cropsPerImage: 8))
        let rank0 = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 10, cropping: .random(seed: 4, cropsPerImage: 8))
        let rank1 = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 10, cropping: .random(seed: 4, cropsPerImage: 8))
        let sampler = EpochSampler(count: dataset.count, globalBatch: 6, seed: 4)
        let whole = (Tensor(shape: [1]), Tensor(shape: [1])), half0 = (Tensor(shape: [1]), Tensor(shape: [1])),
            half1 = (Tensor(shape: [1]), Tensor(shape: [1]))
        for epoch in 0..<2 {
            let order = sampler.order(epoch: epoch)
            for batch in 0..<sampler.batchesPerEpoch {
                dataset.fill(sampler.slice(of: order, batch: batch, rank: 0, worldSize: 1), epoch: epoch, input: whole.0, target: whole.1)
                rank0.fill(sampler.slice(of: order, batch: batch, rank: 0, worldSize: 2), epoch: epoch, input: half0.0, target: half0.1)
                rank1.fill(sampler.slice(of: order, batch: batch, rank: 1, worldSize: 2), epoch: epoch, input: half1.0, target: half1.1)
                #expect(whole.0.array == half0.0.array + half1.0.array && whole.1.array == half0.1.array + half1.1.array,
                        "epoch \(epoch), batch \(batch)")
            }
        }
    }

    @Test("fill writes into the tensors' storage once they have the batch's shape (no reallocation from step to step)")
    func reusesStorage() throws {
        let dataset = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 12, cropping: .random(seed: 1, cropsPerImage: 4))
        let input = Tensor(shape: [4, 3, 6, 6]), target = Tensor(shape: [4, 3, 12, 12])
        let inputStorage = input.data, targetStorage = target.data
        for step in 0..<3 {
            dataset.fill([step, step + 1, step + 2, step + 3], epoch: step, input: input, target: target)
            #expect(input.data == inputStorage && target.data == targetStorage)
        }
        #expect(input.array.contains { $0 != 0 })
    }

    @Test("an image smaller than the crop is an error naming the file; a crop that is not a multiple of the factor, no images, or 0 crops per image too")
    func rejectsBadSettings() {
        do {
            _ = try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 26, cropping: .centre)
            Issue.record("a 24×24 image gave 26×26 crops")
        } catch {
            #expect("\(error)".contains("/images/2.png") && "\(error)".contains("24×24"), "\(error)")
        }
        #expect(throws: A2QError.self) { try RestorationDataset(images: images, upscaleFactor: 3, cropSize: 16, cropping: .centre) }
        #expect(throws: A2QError.self) { try RestorationDataset(images: [], upscaleFactor: 2, cropSize: 16, cropping: .centre) }
        #expect(throws: A2QError.self) {
            try RestorationDataset(images: images, upscaleFactor: 2, cropSize: 16, cropping: .random(seed: 1, cropsPerImage: 0))
        }
    }
}

@Suite("Image folders: BSD300's layout, flat folders and their split, the default photo set")
struct ImageFolderTests {
    /// Writes tiny PNGs with the given names into `folder`.
    func populate(_ folder: String, _ names: [String]) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (index, name) in names.enumerated() {
            try Image(width: 3, height: 2, repeating: UInt8(index)).writePNG(path: folder + "/" + name)
        }
    }

    @Test("images/train and images/test are the splits; .png/.jpg/.jpeg in any case count, other files, hidden files and subfolders do not")
    func bsd300Layout() throws {
        let folder = temporaryFolder("image-folder-bsd")
        try populate(folder + "/images/train", ["b.JPG", "a.png", "c.jpeg", ".hidden.png", "notes.txt"])
        try populate(folder + "/images/test", ["z.PNG"])
        try FileManager.default.createDirectory(atPath: folder + "/images/train/sub.png", withIntermediateDirectories: true)
        let split = try ImageFolder.split(folder)
        #expect(split.layout == .bsd300)
        #expect(split.train.map { ($0 as NSString).lastPathComponent } == ["a.png", "b.JPG", "c.jpeg"])
        #expect(split.test.map { ($0 as NSString).lastPathComponent } == ["z.PNG"])
        let (train, test) = try RestorationData.load(folder: folder)
        #expect(train.count == 3 && test.count == 1 && test[0].image.pixels.allSatisfy { $0 == 0 })
    }

    @Test("a flat folder: sorted names, positions 0, 5, 10, … to test; one image, no images and a missing folder are errors that say what to do")
    func flatLayout() throws {
        let folder = temporaryFolder("image-folder-flat")
        let names = (0..<12).map { String(format: "photo%02d.png", $0) }.shuffled()
        try populate(folder, names)
        let split = try ImageFolder.split(folder)
        #expect(split.layout == .flat)
        #expect(split.test.map { ($0 as NSString).lastPathComponent } == ["photo00.png", "photo05.png", "photo10.png"])
        #expect(split.train.count == 9 && !split.train.contains { $0.hasSuffix("photo05.png") })

        let empty = temporaryFolder("image-folder-empty")
        try Data("x".utf8).write(to: URL(fileURLWithPath: empty + "/readme.txt"))
        for (path, fragment) in [(empty, "holds no .png, .jpg or .jpeg images"), (empty + "/missing", "does not exist")] {
            do {
                _ = try ImageFolder.split(path)
                Issue.record("\(path) was accepted")
            } catch let error as A2QError {
                #expect(error.problem.contains(path) && error.problem.contains(fragment) && !error.remedy.isEmpty, "\(error)")
            }
        }
        let one = temporaryFolder("image-folder-one")
        try populate(one, ["only.png"])
        #expect(throws: A2QError.self) { try ImageFolder.split(one) }
        do { _ = try ImageFolder.split(RestorationData.defaultFolder + "-missing") } catch {
            #expect("\(error)".contains("--data"), "\(error)")
        }
    }

    @Test("a broken file in a folder stops loading with an error naming it")
    func brokenFileInFolder() throws {
        let folder = temporaryFolder("image-folder-broken")
        try populate(folder, ["a.png", "b.png", "c.png"])
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: folder + "/b.png"))
        do {
            _ = try RestorationData.load(folder: folder)
            Issue.record("a text file was loaded as an image")
        } catch {
            #expect("\(error)".contains(folder + "/b.png"), "\(error)")
        }
    }

    @Test("the default photo set (Launch/setup-images.sh): 16 training and 6 test photographs, 8-bit RGB PNG, each at least 256 on its short side and 512 on its long side at most")
    func defaultPhotoSet() throws {
        let split = try ImageFolder.split(RestorationData.defaultFolder)
        #expect(split.layout == .bsd300 && split.train.count == 16 && split.test.count == 6, "\(split)")
        for path in split.train + split.test {
            let image = try Image.read(path: path)
            #expect(min(image.width, image.height) >= 256 && max(image.width, image.height) <= 512, "\(path): \(image.width)×\(image.height)")
        }
    }
}
