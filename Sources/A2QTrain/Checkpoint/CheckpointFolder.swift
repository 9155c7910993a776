import A2QCore
import Foundation

/// Checkpoint files of a run folder: `ckpt-<global step>.h5` (the newest K kept) and `final.h5`.
public enum CheckpointFolder {
    public static func name(globalStep: Int) -> String { String(format: "ckpt-%09d.h5", globalStep) }
    public static let finalName = "final.h5"

    /// Periodic checkpoints in `folder`, oldest first.
    public static func periodic(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".h5") }.sorted()
            .map { (folder as NSString).appendingPathComponent($0) }
    }

    /// Deletes all but the newest `keep` periodic checkpoints.
    public static func prune(_ folder: String, keep: Int) {
        let files = periodic(in: folder)
        for path in files.dropLast(keep) { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The newest checkpoint that validates (final.h5 first, then periodic ones, newest first);
    /// invalid ones are skipped with a warning through `warn`.
    public static func latestValid(in folder: String, warn: (String) -> Void) -> CheckpointFile.Header? {
        var candidates = periodic(in: folder).reversed().map { $0 }
        let final = (folder as NSString).appendingPathComponent(finalName)
        if FileManager.default.fileExists(atPath: final) { candidates.insert(final, at: 0) }
        var best: CheckpointFile.Header?
        for path in candidates {
            do {
                let header = try CheckpointFile.validate(path)
                if header.state.globalStep > (best?.state.globalStep ?? -1) { best = header }
                if path != final { break }  // periodic ones are sorted: the first valid is the newest
            } catch {
                warn("warning: skipping \(path): \(error)")
            }
        }
        return best
    }
}
