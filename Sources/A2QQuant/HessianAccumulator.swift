import COpenBLAS

/// The layer-input Hessian `H = 2·X·Xᵀ` of GPTQ/AXE (docs/AXE.md), summed batch by batch.
///
/// `X` is `[K, n]`: one column per calibration input vector of the layer (for a convolution, one
/// im2col column per output position, K in the weight's `[in, kh, kw]` order). Each `add` runs
/// one `cblas_dsyrk` into the upper triangle; `matrix` returns the full symmetric `[K, K]`
/// (row-major), ready for an all-reduce over MPI ranks (a sum: H is additive over inputs) and
/// for `AccumulatorAwareGPTQ.quantize`.
public struct HessianAccumulator: Sendable {
    /// K, the layer's dot-product length.
    public let inputCount: Int
    /// How many input columns were added.
    public private(set) var columnCount: Int = 0
    /// The upper triangle (row-major, `j >= i`) of `Σ 2·x·xᵀ`; the lower part is not kept.
    private var upper: [Double]

    public init(inputCount: Int) {
        precondition(inputCount > 0, "HessianAccumulator: inputCount \(inputCount) must be positive")
        self.inputCount = inputCount
        upper = [Double](repeating: 0, count: inputCount * inputCount)
    }

    /// Adds `2·X·Xᵀ` for a batch `X` of `columns` input vectors, row-major `[inputCount, columns]`.
    public mutating func add(inputs: UnsafeBufferPointer<Double>, columns: Int) {
        precondition(columns >= 0 && inputs.count == inputCount * columns,
                     "HessianAccumulator.add: \(inputs.count) values is not \(inputCount) × \(columns)")
        guard columns > 0, let x = inputs.baseAddress else { return }
        let k = Int32(inputCount), n = Int32(columns)
        upper.withUnsafeMutableBufferPointer { h in
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, k, n, 2, x, n, 1, h.baseAddress, k)
        }
        columnCount += columns
    }

    /// Adds `2·X·Xᵀ` for `X` given as an array, row-major `[inputCount, columns]`.
    public mutating func add(inputs: [Double], columns: Int) {
        inputs.withUnsafeBufferPointer { add(inputs: $0, columns: columns) }
    }

    /// The full symmetric `H` `[inputCount, inputCount]`, row-major.
    public var matrix: [Double] {
        let k = inputCount
        var h = upper
        for i in 0..<k {
            for j in 0..<i { h[i * k + j] = upper[j * k + i] }
        }
        return h
    }
}
