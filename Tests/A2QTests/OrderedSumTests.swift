import Foundation
import Testing

/// The sums over ranks are a2q's rank-order sum, whatever cuts, progresses or carries them:
/// checked against a reference every rank computes on its own (`a2q selftest allreduce`), and
/// end to end on training runs.
@Suite("ordered sum over ranks", .serialized)
struct OrderedSumTests {
    /// The paths `a2q selftest allreduce` checks with its default buckets (fused float and
    /// double, three bucket sizes under each progress mode).
    static let fixedPaths = 8

    static func checkSelfTest(_ result: MPIRun.Result, ranks: Int) {
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("a2q selftest allreduce — \(ranks) ranks"), "\(result.output)")
        let fixed = result.output.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("fixed, ") }
        #expect(fixed.count == fixedPaths, "\(result.output)")
        #expect(fixed.allSatisfy { $0.hasSuffix(": bitwise equal to the rank-order sum") }, "\(result.output)")
        #expect(result.output.contains("PASS: every fixed-order sum equals the rank-order sum bit for bit"), "\(result.output)")
    }

    @Test("fused and bucketed sums (progress thread, between layers) equal the rank-order reference bit for bit on shared memory",
          arguments: [2, 3, 4])
    func sharedMemory(ranks: Int) throws {
        let result = try MPIRun.run(ranks: ranks, ["selftest", "allreduce"], timeout: 120)
        Self.checkSelfTest(result, ranks: ranks)
    }

    @Test("over TCP (loopback, three ranks) the same rank-order sums bit for bit")
    func tcp() throws {
        var arguments = ["--oversubscribe", "-np", "3", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo",
                         "--mca", "oob_tcp_if_include", "lo", "-x", "OPENBLAS_NUM_THREADS=1"]
        if getuid() == 0 { arguments.insert("--allow-run-as-root", at: 0) }
        let result = try MPIRun.runProcess("/usr/bin/mpirun", arguments + [MPIRun.binary, "selftest", "allreduce"], timeout: 180)
        Self.checkSelfTest(result, ranks: 3)
    }

    @Test("training at R=4 (oversubscribed): fused, 64 KiB buckets with a progress thread and between layers end bitwise identical")
    func trainingFourRanks() throws {
        var dumps: [Data] = []
        for (bucket, progress) in [("0", "thread"), ("0.0625", "thread"), ("0.0625", "layers")] {
            let folder = temporaryFolder("ordered-sum-r4")
            let result = try MPIRun.run(ranks: 4, MPIRun.trainArguments(out: folder, extra: [
                "--allreduce-bucket-mb", bucket, "--allreduce-progress", progress, "--test-dump-parameters", folder + "/dump"]),
                timeout: 240)
            #expect(result.status == 0, "\(result.output)")
            if bucket != "0" { #expect(result.output.contains("overlapped all-reduce: "), "\(result.output)") }
            let reference = try MPIRun.parameters(folder + "/dump", rank: 0)
            for rank in 1..<4 { #expect(try MPIRun.parameters(folder + "/dump", rank: rank) == reference, "rank \(rank) differs") }
            dumps.append(reference)
        }
        #expect(dumps.count == 3 && dumps[1] == dumps[0], "overlapped (progress thread) and fused differ at R=4")
        #expect(dumps.count == 3 && dumps[2] == dumps[0], "overlapped (between layers) and fused differ at R=4")
    }
}
