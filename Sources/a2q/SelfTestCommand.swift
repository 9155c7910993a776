import A2QCore
import A2QDistributed
import ArgumentParser
import Foundation

/// `a2q selftest`: checks of this machine's and this job's set-up that a user can run.
struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check this machine's set-up (run under mpirun for the sums over ranks).",
        subcommands: [SumSelfTest.self])
}

/// `a2q selftest allreduce`: the sums over ranks, fused and in buckets (progress thread and
/// between layers), against a reference each rank computes on its own: every rank regenerates
/// every rank's values and adds them in rank order, ((x₀ + x₁) + x₂) + …, in double.
struct SumSelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Check that the sums over ranks equal the rank-order sum bit for bit, fused and in buckets (run under mpirun, R ≥ 2).",
        discussion: """
            Values span 2^-20 … 2^20 with both signs, and at every fourth element ranks 0 and 1 hold \
            large values that cancel only when added first, so a sum in another association differs. Exit 0 when every path of --allreduce-order fixed matches bit for bit; the \
            elements where MPI_Allreduce's own order (library) differs are counted for information.
            """)

    @Option(help: "Elements per buffer.") var count = 300_001
    @Option(help: "Bucket sizes to cut the buffer into, elements (at most 250 buckets each).") var buckets: [Int] = [1_250, 65_536, 299_999]
    @Option(help: "Seed of the values.") var seed: UInt64 = 24

    func validate() throws {
        guard count > 0, buckets.allSatisfy({ $0 > 0 }) else { throw ValidationError("--count and --buckets must be positive") }
        guard buckets.allSatisfy({ (count + $0 - 1) / $0 <= 250 }) else {
            throw ValidationError("--count / --buckets gives more than 250 buckets (the overlapped all-reduce holds 256 in flight); use larger buckets")
        }
    }

    /// Rank r's values, which every rank regenerates alike: a random sign, mantissa and exponent
    /// in [-20, 20] from rank r's own generator; at every fourth element ranks 0 and 1 instead hold
    /// ±B with B ≈ 2^40…2^60 from a generator they share, which cancel exactly when added first: any
    /// other association rounds the other ranks' small terms away, so a changed order shows even
    /// though the float sum is carried in double.
    static func values(rank: Int, count: Int, seed: UInt64) -> [Float] {
        var own = Xoshiro256(seed: seed &+ 1 &+ UInt64(rank))
        var shared = Xoshiro256(seed: seed)
        func float(_ z: UInt64, exponents: ClosedRange<Int>, signed: Bool) -> Float {
            let mantissa = Float(z & 0xFF_FFFF) / Float(1 << 24) + 1
            let exponent = exponents.lowerBound + Int((z >> 24) % UInt64(exponents.count))
            return Float(sign: signed && (z >> 40) & 1 == 1 ? .minus : .plus, exponent: exponent, significand: mantissa)
        }
        return (0..<count).map { index in
            if index % 4 == 0 {
                let big = float(shared.next(), exponents: 40...60, signed: false)
                if rank < 2 { return rank == 0 ? big : -big }
            }
            return float(own.next(), exponents: -20...20, signed: true)
        }
    }

    func run() throws {
        let communicator = try MPICommunicator()
        let ranks = communicator.worldSize
        let every = (0..<ranks).map { Self.values(rank: $0, count: count, seed: seed) }
        let own = every[communicator.rank]
        var reference = [Float](repeating: 0, count: count)
        var reference64 = [Double](repeating: 0, count: count)
        for i in 0..<count {
            var sum = Double(every[0][i])
            for r in 1..<ranks { sum += Double(every[r][i]) }
            reference[i] = Float(sum)
            reference64[i] = sum
        }
        func differing(_ result: [Float]) -> Int {
            zip(result, reference).reduce(0) { $0 + ($1.0.bitPattern == $1.1.bitPattern ? 0 : 1) }
        }
        var lines: [String] = []
        var failures = 0
        func record(_ path: String, _ wrong: Int, required: Bool = true) {
            if required && wrong > 0 { failures += 1 }
            let verdict = wrong == 0 ? "bitwise equal to the rank-order sum" : "\(wrong) of \(count) elements differ from the rank-order sum"
            lines.append("\(path): \(verdict)\(required ? "" : " (information)")")
        }

        communicator.setSumOrder(.fixed)
        var fused = own
        try fused.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        record("fixed, fused", differing(fused))

        var doubles = own.map(Double.init)
        // The double path: the same rank order on doubles (exact for these values' first sums,
        // compared bit for bit with the reference's doubles).
        try doubles.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        record("fixed, fused, double", zip(doubles, reference64).reduce(0) { $0 + ($1.0.bitPattern == $1.1.bitPattern ? 0 : 1) })

        for threaded in [true, false] {
            let inEffect = communicator.useProgressThread(threaded)
            for bucket in buckets {
                var data = own
                try data.withUnsafeMutableBufferPointer { buffer in
                    // From the end backwards, as the backward pass finishes the gradients.
                    var handles: [Int] = []
                    var end = count
                    while end > 0 {
                        let start = max(end - bucket, 0)
                        handles.append(try communicator.startAllReduceSum(UnsafeMutableBufferPointer(rebasing: buffer[start..<end])))
                        try communicator.progress()
                        end = start
                    }
                    for handle in handles { try communicator.finish(handle) }
                }
                let mode = threaded && inEffect ? "progress thread" : "between layers"
                record("fixed, buckets of \(bucket), \(mode)", differing(data))
            }
        }
        _ = communicator.useProgressThread(false)

        communicator.setSumOrder(.library)
        var library = own
        try library.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        record("library (MPI_Allreduce), fused", differing(library), required: false)
        communicator.setSumOrder(.fixed)

        var failed = [Int64(failures)]
        try failed.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
        if communicator.isRoot {
            printLine("a2q selftest allreduce — \(ranks) ranks on \(Set(communicator.hosts).count) host(s), \(count) elements")
            for line in lines { printLine("  " + line) }
            printLine(failed[0] == 0 ? "PASS: every fixed-order sum equals the rank-order sum bit for bit"
                                     : "FAIL: a fixed-order sum differs from the rank-order sum (on some rank)")
        }
        communicator.finalize()
        if failed[0] != 0 { throw ExitCode(1) }
    }
}
