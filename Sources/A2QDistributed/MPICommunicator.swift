import A2QCore
import MPIShim
#if canImport(Glibc)
import Glibc
#endif

/// OpenMPI over the C shim, on MPI_COMM_WORLD. Errors come back as `A2QError`s carrying
/// `MPI_Error_string`; a collective that outlives `timeout` is an error too (watchdog).
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let worldSize: Int
    public var timeout: Double
    /// Every rank's host (MPI processor name), to name a lost rank's host.
    public let hosts: [String]
    /// How long a rank whose watchdog fired waits for the others to answer its roll call.
    static let rollCallSeconds = 2.0

    /// Initialises MPI (once per process) and reads rank and size.
    public init(timeout: Double = 300) throws {
        var r: Int32 = 0, s: Int32 = 1
        let code = a2q_mpi_init(&r, &s)
        guard code == 0 else { throw MPICommunicator.error(code, "MPI_Init") }
        rank = Int(r)
        worldSize = Int(s)
        self.timeout = timeout
        let width = 64
        var names = [CChar](repeating: 0, count: width * Int(s))
        let namesCode = a2q_mpi_processor_names(&names, Int32(width))
        guard namesCode == 0 else { throw MPICommunicator.error(namesCode, "gathering the ranks' host names") }
        hosts = (0..<Int(s)).map { r in
            String(decoding: names[(r * width)..<((r + 1) * width)].prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// True when this process was started by mpirun/mpiexec (OpenMPI sets these).
    public static var launchedByMPIRun: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// The MPI library's version string (first line).
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: 512)
        a2q_mpi_library_version(&buffer, Int32(buffer.count))
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").first.map(String.init) ?? text
    }

    static func error(_ code: Int32, _ operation: String) -> A2QError {
        var buffer = [CChar](repeating: 0, count: 512)
        a2q_mpi_error_string(code, &buffer, Int32(buffer.count))
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return A2QError("MPI: \(operation) failed: \(text) (code \(code))",
                        remedy: code == A2Q_MPI_TIMEOUT ? "a peer rank died or stalled; see its log above" : "")
    }

    private func check(_ code: Int32, _ operation: String) throws {
        guard code != 0 else { return }
        guard code == A2Q_MPI_TIMEOUT, worldSize > 1 else { throw MPICommunicator.error(code, operation) }
        // Name the lost ranks: the ones that do not answer a roll call.
        var missing = [Int32](repeating: 0, count: worldSize)
        let count = Int(a2q_mpi_roll_call(Self.rollCallSeconds, &missing, Int32(worldSize)))
        let lost = missing.prefix(min(count, worldSize)).map { "rank \($0) (host \(hosts[Int($0)]))" }
        let who = lost.isEmpty ? "every rank answered a roll call afterwards (a slow collective, not a lost rank: raise --watchdog-seconds)"
            : "\(lost.joined(separator: ", ")) did not answer a roll call within \(Int(Self.rollCallSeconds)) s: lost (died, stalled or unreachable)"
        throw A2QError("MPI: \(operation) did not complete within the \(Int(timeout)) s watchdog; \(who)",
                       remedy: "the job is aborted; resume it with --resume auto on the ranks that remain")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress else { return }
        try check(a2q_mpi_allreduce_sum_f32(base, Int64(buffer.count), timeout), "all-reduce (sum, float)")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = buffer.baseAddress else { return }
        try check(a2q_mpi_allreduce_sum_f64(base, Int64(buffer.count), timeout), "all-reduce (sum, double)")
    }

    public func allReduceMin(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        guard let base = buffer.baseAddress else { return }
        try check(a2q_mpi_allreduce_minmax_i64(base, Int64(buffer.count), 0, timeout), "all-reduce (min)")
    }

    public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        guard let base = buffer.baseAddress else { return }
        try check(a2q_mpi_allreduce_minmax_i64(base, Int64(buffer.count), 1, timeout), "all-reduce (max)")
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        try check(a2q_mpi_broadcast_bytes(base, Int64(buffer.count), Int32(root), timeout), "broadcast")
    }

    public func barrier() throws {
        try check(a2q_mpi_barrier(timeout), "barrier")
    }

    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> Int {
        guard let base = buffer.baseAddress else { return -1 }
        var handle: Int32 = -1
        try check(a2q_mpi_iallreduce_sum_f32(base, Int64(buffer.count), timeout, &handle), "starting an all-reduce (sum, float)")
        return Int(handle)
    }

    public func useProgressThread(_ enabled: Bool) -> Bool { a2q_mpi_set_progress_thread(enabled ? 1 : 0) == 1 }

    public func setSumOrder(_ order: SumOrder) {
        _ = a2q_mpi_set_sum_order(order == .fixed ? A2Q_SUM_ORDER_FIXED : A2Q_SUM_ORDER_LIBRARY)
    }

    public func progress() throws { try check(a2q_mpi_progress(), "progress of the started all-reduces") }

    public func finish(_ handle: Int) throws {
        guard handle >= 0 else { return }
        try check(a2q_mpi_wait_handle(Int32(handle), timeout), "all-reduce (sum, float, overlapped)")
    }

    /// Prints `message` prefixed with the rank and calls `MPI_Abort`, which ends every rank.
    public func abort(_ message: String, code: Int32) -> Never {
        printError("a2q: rank \(rank) of \(worldSize): \(message)")
        a2q_mpi_abort(code)
        exit(code)
    }

    /// Finalises MPI (call once, at a clean exit).
    public func finalize() { _ = a2q_mpi_finalize() }
}

import Foundation
