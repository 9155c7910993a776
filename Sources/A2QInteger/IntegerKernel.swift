import A2QCore
import IntegerKernels

/// An integer dot-product kernel of the engine (see `IntegerKernels`).
public enum IntegerKernel: Int32, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Plain C, 32-bit accumulators.
    case scalar = 0
    /// AVX2: `vpmaddwd` on 16-bit-widened pairs, 32-bit accumulators.
    case avx2 = 1
    /// AVX-512 VNNI: `vpdpbusd`, 32-bit accumulators.
    case vnni = 2
    /// AVX2 `vpmaddubsw` + `vpaddw`: 16-bit accumulators widened to int32 once per tile (layers
    /// proven to fit 16 bits per tile only; a layer without tiles is one tile of K).
    case int16AVX2 = 3
    /// The same on AVX-512 BW registers.
    case int16AVX512 = 4

    /// Whether this CPU runs it.
    public var isSupported: Bool { a2qi_supported(rawValue) != 0 }
    /// Whether it accumulates in 16-bit lanes.
    public var accumulates16Bits: Bool { self == .int16AVX2 || self == .int16AVX512 }
    public var description: String { String(cString: a2qi_name(rawValue)) }

    /// The fastest exact 32-bit kernel on this CPU.
    public static var bestInt32: IntegerKernel { IntegerKernel(rawValue: a2qi_best_int32()) ?? .scalar }
    /// The fastest 16-bit kernel on this CPU (nil without AVX2).
    public static var bestInt16: IntegerKernel? { IntegerKernel(rawValue: a2qi_best_int16()) }
}

/// Which kernels the engine uses.
public struct IntegerKernelChoice: Sendable, Equatable {
    public enum Accumulation: Sendable, Equatable {
        /// The fastest exact 32-bit kernel this CPU has.
        case auto
        /// One 32-bit kernel for every layer (it must be supported).
        case forced(IntegerKernel)
        /// The Float64 `dgemm` reference path (any widths, the engine before the integer kernels).
        case reference
    }

    /// What layers use the 16-bit kernel.
    public enum Int16Layers: Sendable, Equatable {
        /// `.proven` where the 16-bit kernel is the faster one (CPUs without AVX-512 VNNI, where
        /// it is 1.8-2.8x the exact 32-bit AVX2 kernel), else `.none`.
        case auto
        case none
        /// Every layer whose exact worst case fits a 16-bit register per tile (the whole dot
        /// product for a layer without tiles).
        case proven
        /// These layers; each must be proven to fit 16 bits per tile, or the engine refuses.
        case named([String])
    }

    public var accumulation: Accumulation
    public var int16: Int16Layers

    public init(accumulation: Accumulation = .auto, int16: Int16Layers = .auto) {
        self.accumulation = accumulation
        self.int16 = int16
    }

    /// Parses `--kernel auto|reference|scalar|avx2|vnni`.
    public static func accumulation(_ text: String) throws -> Accumulation {
        switch text {
        case "auto": return .auto
        case "reference": return .reference
        default:
            guard let kernel = IntegerKernel.allCases.first(where: { $0.description == text }), !kernel.accumulates16Bits else {
                throw A2QError("unknown --kernel '\(text)'", remedy: "use auto, reference, scalar, avx2 or vnni")
            }
            return .forced(kernel)
        }
    }

    /// Parses `--int16-layers auto|none|proven|NAME,NAME`.
    public static func int16Layers(_ text: String) -> Int16Layers {
        switch text {
        case "auto": return .auto
        case "", "none": return .none
        case "proven": return .proven
        default: return .named(text.split(separator: ",").map { String($0) })
        }
    }
}

extension IntegerKernel {
    /// `[out, k]` int8 weights laid out for this kernel's GEMM, as the engine packs each layer
    /// once (for benchmarks that call `a2qi_gemm` directly).
    public func pack(_ weights: [Int8], out: Int, k: Int) -> [UInt8] {
        IntegerPlan.pack(weights, kernel: self, out: out, k: k)
    }
}
