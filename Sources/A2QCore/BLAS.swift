import CDNNL
import COpenBLAS
import CPUSupport
#if canImport(Glibc)
import Glibc
#endif

/// Thin, named wrappers over the matrix libraries, row-major throughout.
///
/// The float GEMM of training runs on oneDNN's `dnnl_sgemm` (`A2Q_GEMM=onednn`, the default)
/// or OpenBLAS's `cblas_sgemm` (`A2Q_GEMM=openblas`): on the AVX-512 Xeon this project measured,
/// oneDNN's was 1.23-1.30x OpenBLAS's best kernel set on the cnn's shapes
/// (`Launch/compare-gemm-libraries.sh`). Both are deterministic for a fixed thread count.
/// OpenBLAS stays for `dgemm` (the integer engine's Float64 reference path).
public enum BLAS {
    /// The library behind `gemm`.
    public enum Backend: String, Sendable {
        case onednn, openblas
    }

    /// Chosen once per process from `A2Q_GEMM` (default oneDNN).
    public static let backend: Backend = {
        guard let value = getenv("A2Q_GEMM").map({ String(cString: $0) }), !value.isEmpty else { return .onednn }
        guard let backend = Backend(rawValue: value.lowercased()) else {
            printError("a2q: warning: A2Q_GEMM=\(value) is not onednn or openblas; using onednn")
            return .onednn
        }
        return backend
    }()

    /// C[m×n] = alpha · op(A) · op(B) + beta · C, with op(A) m×k and op(B) k×n, row-major.
    /// Leading dimensions are the row lengths of the matrices as stored.
    @inline(__always)
    public static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        switch backend {
        case .onednn:
            let status = dnnl_sgemm(transposeA ? 84 : 78, transposeB ? 84 : 78, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k),
                                    alpha, a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc))
            precondition(status == dnnl_success, "dnnl_sgemm(\(m), \(n), \(k)) failed with status \(status.rawValue)")
        case .openblas:
            cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                        blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                        beta, c, blasint(ldc))
        }
    }

    /// `cblas_sgemm` whatever the backend (benchmarks compare the two).
    public static func openBLASGemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                                    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), 1, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Sets the thread count of both libraries for this process (OpenBLAS's pool and the OpenMP
    /// threads oneDNN uses).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(n))
        omp_set_num_threads(Int32(n))
    }

    /// oneDNN's (OpenMP's) thread count.
    public static var gemmThreads: Int { Int(omp_get_max_threads()) }

    /// OpenBLAS's current thread count.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// The CPU kernel OpenBLAS selected (e.g. "Zen", "Haswell").
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// How the kernel set was chosen: OpenBLAS's own detection, the user's `OPENBLAS_CORETYPE`, or
    /// a2q's correction of a generic fallback (decided before `main`, see `CPUSupport`).
    public static var kernelSelection: String { String(cString: a2q_blas_selection()) }

    /// The GEMM library and OpenBLAS's kernel set with how it was chosen, for benchmark headers.
    public static var kernelSummary: String {
        "GEMM \(backend == .onednn ? "oneDNN \(oneDNNVersion)" : "OpenBLAS"); OpenBLAS \(coreName) (\(kernelSelection))"
    }

    /// oneDNN's version, e.g. "2.6.3".
    public static var oneDNNVersion: String {
        guard let v = dnnl_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// The instruction set oneDNN's kernels use (its effective ISA: the CPU's, capped by
    /// `ONEDNN_MAX_CPU_ISA`, which `A2Q_CPU_FEATURES_LIMIT` sets).
    public static var oneDNNISA: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: "sse41"
        case dnnl_cpu_isa_avx: "avx"
        case dnnl_cpu_isa_avx2: "avx2"
        case dnnl_cpu_isa_avx2_vnni: "avx2_vnni"
        case dnnl_cpu_isa_avx512_core: "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: "avx512_core_amx"
        case let other: "isa 0x\(String(other.rawValue, radix: 16))"
        }
    }

    /// OpenBLAS's build configuration string.
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }
}
