import COpenBLAS
import CPUSupport

/// Thin, named wrappers over OpenBLAS, row-major throughout.
public enum BLAS {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, with op(A) m×k and op(B) k×n, row-major.
    /// Leading dimensions are the row lengths of the matrices as stored.
    @inline(__always)
    public static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// Sets OpenBLAS's thread count for this process.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

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

    /// `coreName` and how it was chosen, for benchmark headers.
    public static var kernelSummary: String { "OpenBLAS \(coreName) (\(kernelSelection))" }

    /// OpenBLAS's build configuration string.
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }
}
