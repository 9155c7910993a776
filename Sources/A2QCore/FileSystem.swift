import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe file placement.
public enum FileSystem {
    /// fsyncs `temporary`, renames it to `destination` (atomic on POSIX), then fsyncs the
    /// folder so the rename itself survives a crash.
    public static func commit(temporary: String, to destination: String) throws {
        try sync(path: temporary, directory: false)
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            throw A2QError("cannot move \(temporary) to \(destination): \(reason)")
        }
        try sync(path: (destination as NSString).deletingLastPathComponent.isEmpty
                    ? "." : (destination as NSString).deletingLastPathComponent, directory: true)
    }

    /// fsync a file or folder.
    public static func sync(path: String, directory: Bool) throws {
        let fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
        guard fd >= 0 else { throw A2QError("cannot open \(path) to flush it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            throw A2QError("cannot flush \(path) to disk: \(String(cString: strerror(errno)))", remedy: "is the disk full?")
        }
    }

    /// Checks that `folder` exists (creating it if needed) and is writable, by writing and
    /// removing a probe file. Call before long work, not at the first save.
    public static func ensureWritableFolder(_ folder: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw A2QError("\(folder) exists and is not a folder") }
        } else {
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw A2QError("cannot create the output folder \(folder): \(error.localizedDescription)")
            }
        }
        let probe = (folder as NSString).appendingPathComponent(".a2q-write-probe-\(getpid())")
        guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
            throw A2QError("the output folder \(folder) is not writable", remedy: "choose another --out or fix its permissions")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }
}
