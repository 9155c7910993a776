import A2QCheckpoint
import A2QCore
import A2QDistributed
import A2QNN
import A2QTrain
import ArgumentParser

@main
struct A2QCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "a2q",
        abstract: "Accumulator-aware quantized training (A2Q / A2Q+) for integer hardware.",
        version: a2qVersion,
        subcommands: [TrainCommand.self, EvalCommand.self, ExportCommand.self, InspectCommand.self, VerifyCommand.self,
                      QuantizeCommand.self, ReportCommand.self, EnvCommand.self, BenchCommand.self, ModelCommand.self,
                      ImportCommand.self, SelfTestCommand.self, UpscaleCommand.self])
}

/// `a2q env`: what this process sees of MPI, HDF5 and OpenBLAS.
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "Print the MPI, HDF5 and OpenBLAS this binary runs on (run it under mpirun too).")

    func run() throws {
        let communicator = try MPICommunicator()
        let lines = [
            "a2q \(a2qVersion)",
            "mpi: \(MPICommunicator.libraryVersion)",
            "mpi world size: \(communicator.worldSize), rank: \(communicator.rank)",
            "hdf5: \(hdf5LibraryVersion)",
            "cpu: \(CPU.description)",
            "openblas: core \(BLAS.coreName), threads \(BLAS.threads)",
            "openblas kernel set: \(BLAS.kernelSelection)",
            "gemm: \(BLAS.backend == .onednn ? "oneDNN \(BLAS.oneDNNVersion) dnnl_sgemm, threads \(BLAS.gemmThreads)" : "OpenBLAS cblas_sgemm") (A2Q_GEMM=onednn|openblas)",
            "convolutions: \(Conv2d.defaultBackend == .onednn ? "oneDNN \(BLAS.oneDNNVersion) convolution primitives (blocked layouts inside)" : "im2col + sgemm") (A2Q_CONV=onednn|im2col)",
            "onednn isa: \(BLAS.oneDNNISA) (ONEDNN_MAX_CPU_ISA\(getenv("ONEDNN_MAX_CPU_ISA").map { "=" + String(cString: $0) } ?? " unset"))",
            "openblas config: \(BLAS.configuration)",
        ]
        // One block per rank, in rank order.
        for r in 0..<communicator.worldSize {
            try communicator.barrier()
            if r == communicator.rank {
                printLine(lines.map { communicator.worldSize > 1 ? "[rank \(r)] \($0)" : $0 }.joined(separator: "\n"))
            }
        }
        try communicator.barrier()
        communicator.finalize()
    }
}

#if canImport(Glibc)
import Glibc
#endif
