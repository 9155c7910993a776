import A2QCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Rank 0's progress display: a live bar on a terminal, periodic plain lines otherwise.
public final class Progress: @unchecked Sendable {
    private let enabled: Bool
    private let live: Bool
    private let every: Int
    private var lastDraw = 0.0

    /// `live` asks for the terminal bar; it is used only when standard output is a terminal
    /// (under mpirun a rank cannot tell, so the trainer passes false there).
    public init(enabled: Bool, logEvery: Int, live: Bool = true) {
        self.enabled = enabled
        self.live = live && enabled && isatty(1) == 1
        every = logEvery
    }

    /// Reports one step; draws at most 10 times a second live, every `logEvery` steps otherwise.
    public func step(phase: String, epoch: Int, epochs: Int, step: Int, stepsPerEpoch: Int, loss: Float,
                     imagesPerSecond: Double, remainingSteps: Int, secondsPerStep: Double) {
        guard enabled else { return }
        let eta = formatDuration(Double(remainingSteps) * secondsPerStep)
        if live {
            let now = monotonicSeconds()
            guard now - lastDraw > 0.1 || step == stepsPerEpoch else { return }
            lastDraw = now
            let width = 24
            let done = stepsPerEpoch > 0 ? min(width, width * step / stepsPerEpoch) : 0
            let bar = String(repeating: "█", count: done) + String(repeating: "·", count: width - done)
            let text = String(format: "\r%@ epoch %d/%d %@ %d/%d  loss %.4f  %.0f img/s  ETA %@   ",
                              phase, epoch + 1, epochs, bar, step, stepsPerEpoch, loss, imagesPerSecond, eta)
            FileHandle.standardOutput.write(Data(text.utf8))
        } else if step % every == 0 || step == stepsPerEpoch {
            printLine(String(format: "%@ epoch %d/%d step %d/%d  loss %.4f  %.0f img/s  ETA %@",
                             phase, epoch + 1, epochs, step, stepsPerEpoch, loss, imagesPerSecond, eta))
        }
    }

    /// Prints a line (ending a live bar first).
    public func line(_ text: String) {
        guard enabled else { return }
        if live { FileHandle.standardOutput.write(Data("\r\u{1b}[K".utf8)) }
        printLine(text)
    }
}

/// `1h02m`, `3m05s`, `12s`.
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
