import A2QCore
import Foundation
import Testing

/// The kernel set an `a2q env` output reports, per rank.
private func reportedCores(_ output: String) -> [String] {
    output.split(separator: "\n").compactMap { line in
        guard let range = line.range(of: "openblas: core ") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != "," })
    }
}

@Suite("OpenBLAS kernel set: never a generic fallback on a CPU with AVX2", .serialized)
struct BLASSelectionTests {
    @Test("this test process runs the best tier the CPU supports, unless the user chose one")
    func testProcess() {
        let tier = CPU.tier(ofBLASCore: BLAS.coreName)
        #expect(tier != nil, "unknown OpenBLAS core \(BLAS.coreName)")
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map({ !$0.isEmpty }) == true
            && !BLAS.kernelSelection.hasPrefix("chosen by a2q") {
            #expect(BLAS.kernelSelection.hasPrefix("set by the user"))
        } else {
            #expect(tier.map { $0 >= CPU.tier } == true, "\(BLAS.coreName) on a CPU with \(CPU.description): \(BLAS.kernelSelection)")
        }
        if CPU.tier >= .avx2 { #expect(tier.map { $0 >= .avx2 } == true, "generic kernels \(BLAS.coreName) on \(CPU.description)") }
    }

    @Test("a2q env, alone and under mpirun -np 2: the best tier, and how it was chosen")
    func commandLine() throws {
        let alone = try runA2Q(["env"], environment: ["OPENBLAS_CORETYPE": nil, "A2Q_OPENBLAS_AUTO": nil])
        #expect(alone.status == 0, "\(alone.output)")
        #expect(alone.output.contains("openblas kernel set: "))
        let ranks = try MPIRun.run(ranks: 2, ["env"], environment: ["OPENBLAS_CORETYPE": nil, "A2Q_OPENBLAS_AUTO": nil])
        #expect(ranks.status == 0, "\(ranks.output)")
        let cores = reportedCores(alone.output) + reportedCores(ranks.output)
        #expect(cores.count == 3, "\(alone.output)\n\(ranks.output)")
        for core in cores { #expect(CPU.tier(ofBLASCore: core).map { $0 >= CPU.tier } == true, "\(core) on \(CPU.description)") }
    }

    // The limit can only remove features: on a CPU without AVX2 the run lists this test as skipped.
    @Test("a CPU limited to AVX2 gets AVX2 kernels (OpenBLAS's set and oneDNN's ISA), and a user's OPENBLAS_CORETYPE wins",
          .enabled(if: CPU.tier >= .avx2, "this CPU (or A2Q_CPU_FEATURES_LIMIT) has no AVX2: limiting it to AVX2 changes nothing"))
    func limitedAndUser() throws {
        let limited = try runA2Q(["env"], environment: ["OPENBLAS_CORETYPE": nil, "A2Q_OPENBLAS_AUTO": nil, "A2Q_CPU_FEATURES_LIMIT": "avx2"])
        #expect(limited.status == 0, "\(limited.output)")
        let core = reportedCores(limited.output).first ?? ""
        // Not above the limit either: the AVX2-tier pass of Launch/test.sh relies on it.
        #expect(CPU.tier(ofBLASCore: core) == .avx2, "\(limited.output)")
        #expect(limited.output.contains("onednn isa: avx2 (ONEDNN_MAX_CPU_ISA=AVX2)"), "\(limited.output)")
        let user = try runA2Q(["env"], environment: ["OPENBLAS_CORETYPE": "Haswell", "A2Q_OPENBLAS_AUTO": nil])
        #expect(user.status == 0)
        #expect(reportedCores(user.output) == ["Haswell"])
        #expect(user.output.contains("set by the user: OPENBLAS_CORETYPE=Haswell"))
    }

    @Test("OPENBLAS_CORETYPE naming kernels the CPU cannot run: a clear message and exit 1, not an illegal instruction")
    func impossibleUserChoice() throws {
        let result = try runA2Q(["env"], environment: ["OPENBLAS_CORETYPE": "SkylakeX", "A2Q_OPENBLAS_AUTO": nil,
                                                       "A2Q_CPU_FEATURES_LIMIT": "avx2"])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("OPENBLAS_CORETYPE=SkylakeX selects kernels that need AVX-512"))
        #expect(result.output.contains("Unset OPENBLAS_CORETYPE"))
    }
}
