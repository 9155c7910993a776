import A2QCore
import Foundation

/// Where training and test data come from.
public enum DataSource: Sendable, Equatable, CustomStringConvertible {
    /// A folder of MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, ...) or of CIFAR-10
    /// binary files (`data_batch_1.bin` …, `test_batch.bin`), told apart by the file names.
    case folder(String)
    /// The small deterministic synthetic set (for tests and quick runs).
    case synthetic

    /// Fashion-MNIST as installed by the Debian package `dataset-fashion-mnist`.
    public static let defaultFolder = "/usr/share/datasets/fashion-mnist"

    /// `synthetic`, or a folder path.
    public init(argument: String) {
        self = argument == "synthetic" ? .synthetic : .folder(argument)
    }

    public var description: String {
        switch self {
        case .folder(let path): return path
        case .synthetic: return "synthetic"
        }
    }

    /// Loads the training and test splits, validating every file.
    public func load() throws -> (train: Dataset, test: Dataset) {
        switch self {
        case .synthetic:
            return (SyntheticDataset.make(count: 6000, seed: 1), SyntheticDataset.make(count: 1000, seed: 2))
        case .folder(let path):
            try Self.requireFolder(path)
            if CIFAR.isCIFARFolder(path) { return (try CIFAR.trainSplit(folder: path), try CIFAR.testSplit(folder: path)) }
            let train = try Self.split(folder: path, prefix: "train")
            let test = try Self.split(folder: path, prefix: "t10k")
            return (train, test)
        }
    }

    /// Loads only the test split (evaluation needs no training files).
    public func loadTest() throws -> Dataset {
        switch self {
        case .synthetic:
            return SyntheticDataset.make(count: 1000, seed: 2)
        case .folder(let path):
            try Self.requireFolder(path)
            if CIFAR.isCIFARFolder(path) { return try CIFAR.testSplit(folder: path) }
            return try Self.split(folder: path, prefix: "t10k")
        }
    }

    static func requireFolder(_ path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw A2QError("data folder \(path) does not exist",
                           remedy: path == DataSource.defaultFolder
                               ? "install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (or run Launch/setup.sh), or pass --data DIR"
                               : "pass --data with a folder of MNIST-format IDX files or CIFAR-10 binary files, or --data synthetic")
        }
    }

    static func file(folder: String, name: String) throws -> String {
        for candidate in [name + ".gz", name] {
            let full = (folder as NSString).appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: full) { return full }
        }
        throw A2QError("\((folder as NSString).appendingPathComponent(name))[.gz] is missing",
                       remedy: folder == DataSource.defaultFolder
                           ? "reinstall it with `apt-get install --reinstall dataset-fashion-mnist`"
                           : "the folder must hold train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz)")
    }

    static func split(folder: String, prefix: String) throws -> Dataset {
        let imagesPath = try file(folder: folder, name: "\(prefix)-images-idx3-ubyte")
        let labelsPath = try file(folder: folder, name: "\(prefix)-labels-idx1-ubyte")
        let images = try IDX.read(imagesPath)
        let labels = try IDX.read(labelsPath)
        guard images.shape.count == 3 else {
            throw A2QError("\(imagesPath): images must be 3-dimensional [count, rows, cols], found \(describe(images.shape))")
        }
        guard labels.shape.count == 1 else {
            throw A2QError("\(labelsPath): labels must be 1-dimensional, found \(describe(labels.shape))")
        }
        guard images.shape[0] == labels.shape[0] else {
            throw A2QError("\(imagesPath) holds \(images.shape[0]) images but \(labelsPath) holds \(labels.shape[0]) labels")
        }
        let classes = Int(labels.bytes.max() ?? 0) + 1
        guard classes <= 256 else { throw A2QError("\(labelsPath): too many classes") }
        return try Dataset(images: images.bytes, labels: labels.bytes, height: images.shape[1], width: images.shape[2],
                           classes: max(classes, 10))
    }
}
