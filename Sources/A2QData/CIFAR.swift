import A2QCore
import Foundation

/// The CIFAR-10 binary format: files of records, each one label byte then 3×32×32 pixel bytes
/// (the red plane, then green, then blue, each row-major). Training: `data_batch_1.bin` …
/// `data_batch_5.bin` (those present, in order); test: `test_batch.bin`.
public enum CIFAR {
    public static let channels = 3, height = 32, width = 32, classes = 10
    /// Bytes per record: the label and the image.
    public static let recordSize = 1 + channels * height * width
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"

    /// Whether `folder` holds CIFAR-10 binary files (detected by `test_batch.bin` or `data_batch_1.bin`).
    public static func isCIFARFolder(_ folder: String) -> Bool {
        [testFile, trainFiles[0]].contains { FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent($0)) }
    }

    /// Reads one split from the given files (all must exist and be whole numbers of records;
    /// labels must be below 10).
    public static func read(_ paths: [String]) throws -> Dataset {
        var images: [UInt8] = [], labels: [UInt8] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw A2QError("cannot read \(path)", remedy: "check the file's permissions")
            }
            guard !data.isEmpty, data.count % recordSize == 0 else {
                throw A2QError("\(path) holds \(data.count) bytes, not a whole number of \(recordSize)-byte CIFAR-10 records (1 label byte + 3×32×32 pixels)",
                               remedy: "the file is truncated or not in the CIFAR-10 binary format; download it again")
            }
            let records = data.count / recordSize
            images.reserveCapacity(images.count + records * (recordSize - 1))
            try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                let bytes = raw.bindMemory(to: UInt8.self)
                for r in 0..<records {
                    let label = bytes[r * recordSize]
                    guard Int(label) < classes else {
                        throw A2QError("\(path): record \(r) has label \(label); CIFAR-10 labels are 0...9")
                    }
                    labels.append(label)
                    images.append(contentsOf: bytes[(r * recordSize + 1)..<((r + 1) * recordSize)])
                }
            }
        }
        return try Dataset(images: images, labels: labels, channels: channels, height: height, width: width, classes: classes)
    }

    /// The training split of a CIFAR folder: the `data_batch_*.bin` files present (at least one).
    public static func trainSplit(folder: String) throws -> Dataset {
        let present = trainFiles.map { (folder as NSString).appendingPathComponent($0) }
            .filter { FileManager.default.fileExists(atPath: $0) }
        guard !present.isEmpty else {
            throw A2QError("\(folder) holds no CIFAR-10 training file (data_batch_1.bin … data_batch_5.bin)",
                           remedy: "put the training batches next to test_batch.bin")
        }
        return try read(present)
    }

    /// The test split of a CIFAR folder.
    public static func testSplit(folder: String) throws -> Dataset {
        let path = (folder as NSString).appendingPathComponent(testFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw A2QError("\(path) is missing", remedy: "a CIFAR-10 folder needs test_batch.bin next to data_batch_*.bin")
        }
        return try read([path])
    }
}
