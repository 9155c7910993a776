import A2QCheckpoint
import Foundation
import Testing

/// Helpers of the tests that check the README's and docs' claims one by one
/// (RankChangeResumeTests, CheckpointRetentionTests, ValueRulesTests, SchemaV1Tests, ...).
enum Claims {
    /// `Tests/Python/h5_claims.py COMMAND ARGS`: h5py edits of files (mutations, schema-1 rewrites);
    /// records an issue if the script fails.
    @discardableResult
    static func h5(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let (status, output) = try python("h5_claims.py", arguments)
        #expect(status == 0, "h5_claims.py \(arguments.joined(separator: " ")): \(output) (h5py and numpy: Launch/setup-python.sh)",
                sourceLocation: sourceLocation)
        return output
    }

    /// Writes `text` to `path`.
    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Float values of a dataset (integer datasets through their exact values).
    static func floats(_ path: String, _ dataset: String) throws -> [Float] {
        let parts = dataset.split(separator: "/").map(String.init)
        var group: HDF5Group = try HDF5File.openForReading(path)
        for part in parts.dropLast() { group = try group.openGroup(part) }
        let name = parts.last ?? dataset
        if try group.datasetInfo(name).type?.isInteger ?? false {
            return try group.read(name, as: Int64.self).values.map { Float($0) }
        }
        return try group.read(name, as: Float.self).values
    }

    /// An integer attribute of the root (or of the group `group`).
    static func intAttribute(_ path: String, _ name: String, group: String? = nil) throws -> Int {
        var owner: HDF5Group = try HDF5File.openForReading(path)
        for part in (group ?? "").split(separator: "/") { owner = try owner.openGroup(String(part)) }
        return try owner.intAttribute(name)
    }

    /// The records of a run folder's metrics.jsonl whose `type` is `type`.
    static func records(_ folder: String, type: String) throws -> [[String: Any]] {
        try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == type }
    }

    /// Lines of `output` that contain `fragment`.
    static func lines(_ output: String, containing fragment: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.contains(fragment) }
    }

    /// Relative L2 difference of two equally long vectors.
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
        let norm = a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        return difference / max(norm, .leastNormalMagnitude)
    }

    /// Every /model tensor of two checkpoints whose bits differ (empty: bitwise equal), and
    /// whether both hold the same, non-empty set of tensors.
    static func differingTensors(_ a: String, _ b: String) throws -> (sameNames: Bool, differing: [String]) {
        let x = try modelTensors(a), y = try modelTensors(b)
        let differing = x.keys.sorted().filter { x[$0]?.map(\.bitPattern) != y[$0]?.map(\.bitPattern) }
        return (!x.isEmpty && x.keys.sorted() == y.keys.sorted(), differing)
    }
}
