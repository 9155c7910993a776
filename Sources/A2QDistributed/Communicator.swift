import A2QCore

/// What data-parallel training needs from a process group: who am I, sum gradients,
/// agree on values, share rank 0's state, and stop everyone on a fatal error.
///
/// Collectives take the watchdog `timeout` (seconds; 0 waits forever) so that a dead or
/// stalled peer ends in an error instead of a hang.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Every rank's host name, by rank.
    var hosts: [String] { get }
    /// Watchdog for collectives, seconds (0 = none).
    var timeout: Double { get set }
    /// In-place sum over ranks.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// In-place element-wise minimum / maximum over ranks.
    func allReduceMin(_ buffer: UnsafeMutableBufferPointer<Int64>) throws
    func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws
    /// Copies `root`'s bytes to every rank.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Starts an in-place sum over ranks and returns at once with a handle for `finish`
    /// (the overlapped all-reduce); `buffer` must stay untouched until then.
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> Int
    /// How started sums advance: `true`, a progress thread advances them while this thread
    /// computes; `false`, only `progress()` and `finish` do. Returns whether the requested way
    /// is in effect (a thread needs the MPI library's MPI_THREAD_SERIALIZED); when a thread
    /// cannot be had, the sums progress the other way.
    func useProgressThread(_ enabled: Bool) -> Bool
    /// Sets how the sums from now on associate their terms (`SumOrder.fixed` unless told).
    func setSumOrder(_ order: SumOrder)
    /// Lets started sums advance without waiting (call it while computing; nothing to do when
    /// a progress thread does it).
    func progress() throws
    /// Waits, under the watchdog, for a sum started with `startAllReduceSum`.
    func finish(_ handle: Int) throws
    /// Ends the whole job with `code` after printing `message` (never returns).
    func abort(_ message: String, code: Int32) -> Never
}

extension Communicator {
    /// Whether this rank logs and writes files.
    public var isRoot: Bool { rank == 0 }

    /// Broadcasts an array of trivially-copyable values in place.
    public func broadcast<T: BitwiseCopyable>(_ values: inout [T], root: Int = 0) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Sum of one Double over ranks.
    public func sum(_ value: Double) throws -> Double {
        var buffer = [value]
        try buffer.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return buffer[0]
    }
}

/// World size 1: every collective is the identity.
public final class SingleProcessCommunicator: Communicator, @unchecked Sendable {
    public let rank = 0
    public let worldSize = 1
    public var hosts: [String] {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return [String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)]
    }
    public var timeout: Double = 0
    public init() {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allReduceMin(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {}
    public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> Int { 0 }
    public func useProgressThread(_ enabled: Bool) -> Bool { true }
    public func setSumOrder(_ order: SumOrder) {}
    public func progress() throws {}
    public func finish(_ handle: Int) throws {}
    public func abort(_ message: String, code: Int32) -> Never {
        printError(message)
        exit(code)
    }
}

#if canImport(Glibc)
import Glibc
#endif
