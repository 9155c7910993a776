import A2QCore
import Foundation

/// Appends one JSON object per line to `metrics.jsonl` (rank 0 only; others hold no file).
public final class MetricsLog: @unchecked Sendable {
    private let handle: FileHandle?

    /// Opens (appending) `path`, or does nothing when `path` is nil.
    public init(path: String?) throws {
        guard let path else { handle = nil; return }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw A2QError("cannot create \(path)", remedy: "check that the output folder is writable")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw A2QError("cannot open \(path) for writing") }
        h.seekToEndOfFile()
        handle = h
    }

    deinit { try? handle?.close() }

    /// Writes one record (keys sorted).
    public func write(_ record: [String: Any]) {
        guard let handle else { return }
        guard JSONSerialization.isValidJSONObject(record),
              let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        handle.write(data)
        handle.write(Data("\n".utf8))
    }

    /// Encodes an Encodable value as a JSON object for embedding in a record.
    public static func object<T: Encodable>(_ value: T) -> Any {
        guard let data = try? JSONEncoder().encode(value), let object = try? JSONSerialization.jsonObject(with: data) else {
            return NSNull()
        }
        return object
    }
}
