#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to standard error, unbuffered.
public func printError(_ message: String) {
    writeLine(message, to: 2)
}

/// Writes a line to standard output and flushes it (progress lines under mpirun).
public func printLine(_ message: String) {
    writeLine(message, to: 1)
}

private func writeLine(_ message: String, to descriptor: Int32) {
    var line = message
    if !line.hasSuffix("\n") { line += "\n" }
    line.utf8CString.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return }
        var offset = 0
        let total = buffer.count - 1
        while offset < total {
            let written = write(descriptor, base + offset, total - offset)
            if written <= 0 { break }
            offset += written
        }
    }
}
