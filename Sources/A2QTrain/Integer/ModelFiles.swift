import A2QCheckpoint
import A2QCore
import A2QData
import A2QInteger
import Foundation

/// Opening what users pass to `export`, `inspect`, `eval` and `verify`: checkpoints and exports.
public enum ModelFiles {
    /// Rebuilds the trained model stored in a checkpoint (the phase it was saved in).
    public static func loadCheckpoint(_ path: String) throws -> (model: Model, header: CheckpointFile.Header) {
        let header = try CheckpointFile.header(path)
        let model = try header.buildModel()
        try CheckpointFile.restore(path, into: model, optimizer: nil)
        return (model, header)
    }

    /// The integer model of an export, or of a checkpoint (converted in memory).
    public static func integerModel(_ path: String) throws -> IntegerModel {
        if ExportFile.isExport(path) { return try ExportFile.read(path, operations: OpRegistry.integerOperations) }
        let file = try HDF5File.openForReading(path)
        guard (try? file.stringAttribute("format")) == CheckpointFile.format else {
            throw A2QError("\(path) is neither an a2q checkpoint nor an a2q export",
                           remedy: "pass a file written by `a2q train` or `a2q export`")
        }
        return try IntegerModel(from: try loadCheckpoint(path).model)
    }

    /// The test split of a data source (`--data`), or of the checkpoint's configured data; the
    /// training files need not be there.
    public static func testSet(_ data: String) throws -> Dataset {
        try DataSource(argument: data).loadTest()
    }

    /// The test split, checked against the `[channels, height, width]` the model takes.
    public static func testSet(_ data: String, for inputShape: [Int]) throws -> Dataset {
        let test = try testSet(data)
        if inputShape.count == 3 {
            try test.requireImageSize(height: inputShape[1], width: inputShape[2], channels: inputShape[0], source: data)
        } else if inputShape.reduce(1, *) != test.imageSize {
            throw A2QError("\(data): images of \(test.imageSize) pixels, but the model takes \(describe(inputShape)) values")
        }
        return test
    }
}
