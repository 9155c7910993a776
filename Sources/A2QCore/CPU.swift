import CPUSupport

/// What this CPU can run, as detected once before `main` (cpuid and the OS's saved state).
public enum CPU {
    /// Instruction-set tiers used to pick kernels.
    public enum Tier: Int, Comparable, Sendable {
        case baseline = 0, avx2 = 1, avx512 = 2
        public static func < (a: Tier, b: Tier) -> Bool { a.rawValue < b.rawValue }
    }

    public static var tier: Tier { Tier(rawValue: Int(a2q_cpu().pointee.tier)) ?? .baseline }
    /// AVX-512 VNNI (`vpdpbusd`).
    public static var hasVNNI: Bool { a2q_cpu().pointee.avx512_vnni != 0 }
    /// e.g. "Intel or other, AVX-512 (VNNI, BF16)".
    public static var description: String { String(cString: a2q_cpu_description()) }

    /// The tier an OpenBLAS kernel set needs (nil for names a2q does not know).
    public static func tier(ofBLASCore name: String) -> Tier? { Tier(rawValue: Int(a2q_blas_core_tier(name))) }
}
