import COpenBLAS

/// AXE on GPTQ/OPTQ (Colbert et al., "Accumulator-Aware Post-Training Quantization", arXiv
/// 2409.17092, Algorithm 2 with multi-stage accumulation): quantizes one layer's float weights
/// to M-bit integers whose every tile provably fits the tile register. See docs/AXE.md.
///
/// Notation: `W ∈ R^{C×K}` (C output channels, K inputs, a convolution's `[in, kh, kw]`
/// flattened), `H = 2XXᵀ ∈ R^{K×K}`, per-channel scales `s_c`, `q_max = 2^(M-1) - 1`, tiles
/// `t = ⌊i / T⌋` of T consecutive inputs (the last may be shorter), limits A, B (A2Q+) or L (A2Q).
///
/// What runs, in this order:
/// 1. Dead inputs (`H_ii = 0`): `H_ii ← 1`, `W_:,i ← 0` (GPTQ).
/// 2. Damping `H ← H + ηI`, `η = dampingFraction · mean(diag H)`; `H⁻¹` and its upper Cholesky
///    factor `U` (`H⁻¹ = UᵀU`) by LAPACK's `dpotrf`/`dpotri`/`dpotrf` (OpenBLAS).
/// 3. Soft thresholds, once, from the weights of step 1 in integer units `v = W_c,tile / s_c`:
///    `λ_{c,t}` is the threshold of the Euclidean projection of `v` (A2Q+: `v − mean(v)`) onto
///    the L1 ball of radius `A + B` (A2Q+) or `L` (A2Q): `Σ max(|v_i| − λ, 0) = radius`, and
///    `λ = 0` inside the ball — "the average of the non-zero magnitudes" of the paper.
/// 4. Columns in natural order `i = 0..<K` (no act-order: the running sums need tile order),
///    for each channel c, with the current (already error-updated) `w = W_c,i`:
///    `x = w / s_c`; `x̃ = sign(x)·max(|x| − λ_{c,t}, 0)`;
///    the running clamp from the tile's sums so far `α_c`, `β_c`:
///    A2Q+: `q ∈ [−min(q_max, B − β_c), min(q_max, A − α_c)]`;
///    A2Q:  `q ∈ [−r, r]`, `r = min(q_max, L − α_c − β_c)`;
///    `q = clamp(round(x̃))` (round half away from zero), then `α_c += max(q, 0)`,
///    `β_c += max(−q, 0)`; sums restart at every tile.
///    Error `e_c = (s_c·clamp_budget(x̃) − s_c·q) / U_ii` (`.roundingOnly`, default: the value
///    after threshold and running clamp is what GPTQ compensates towards, so only its rounding
///    and M-bit saturation are propagated, as the authors' A2GPTQ does) or
///    `(w − s_c·q) / U_ii` (`.fullDifference`: shrinkage and clamp compensated too), and GPTQ's
///    update `W_:,j −= e·U_ij` for `j > i`:
///    rank-1 (`dger`) inside blocks of `blockSize` columns, one `dgemm` on the rest per block.
/// 5. A final integer check of every tile (a failure is a bug: `preconditionFailure`).
///
/// Deviations from the paper: the clamp is applied to the rounded integer against integer limits
/// (the paper clamps the float before rounding with a margin of ½ for round-to-nearest; both give
/// integers within the budget, this one without floating-point reasoning). The threshold of the
/// last, shorter tile uses its own length (the library pads with zeros). The threshold's radius
/// is `A + B` (or L), the floored limits, where the library uses `(2^P − 2)/(2^N − 1)` unfloored. `.unconstrained` with
/// `λ = 0` is plain GPTQ without act-order.
public enum AccumulatorAwareGPTQ {
    /// The default per-channel scales `s_c = max_i |W_c,i| / (2^(M-1) - 1)` (1 for an all-zero row).
    public static func defaultScales(weights: [Double], outputs: Int, inputs: Int, weightBits: Int) -> [Double] {
        precondition(weights.count == outputs * inputs, "defaultScales: \(weights.count) weights is not \(outputs) × \(inputs)")
        precondition((2...16).contains(weightBits), "defaultScales: weight bits \(weightBits) out of 2...16")
        let qmax = Double((1 << (weightBits - 1)) - 1)
        return (0..<outputs).map { c in
            var m = 0.0
            for i in 0..<inputs { m = max(m, abs(weights[c * inputs + i])) }
            return m > 0 ? m / qmax : 1
        }
    }

    /// Quantizes `weights` (row-major `[outputs, inputs]`) with the Hessian `hessian`
    /// (row-major symmetric `[inputs, inputs]`, `2·X·Xᵀ` summed over the calibration inputs,
    /// e.g. `HessianAccumulator.matrix`), per-channel `scales` (nil: `defaultScales`).
    /// Throws when the weights or H are not finite or the damped H is not positive definite.
    public static func quantize(weights: [Double], outputs: Int, inputs: Int, hessian: [Double],
                                scales: [Double]? = nil,
                                options: AccumulatorAwareGPTQOptions) throws -> AccumulatorAwareGPTQResult {
        let c = outputs, k = inputs
        precondition(c > 0 && k > 0, "AccumulatorAwareGPTQ: \(c) × \(k) layer")
        precondition(weights.count == c * k, "AccumulatorAwareGPTQ: \(weights.count) weights is not \(c) × \(k)")
        precondition(hessian.count == k * k, "AccumulatorAwareGPTQ: Hessian of \(hessian.count) values is not \(k) × \(k)")
        let m = options.weightBits
        precondition((2...16).contains(m), "AccumulatorAwareGPTQ: weight bits \(m) out of 2...16")
        let tile = min(options.tileLength ?? k, k)
        precondition(tile > 0, "AccumulatorAwareGPTQ: tile length \(tile) must be positive")
        precondition(options.blockSize > 0, "AccumulatorAwareGPTQ: block size \(options.blockSize) must be positive")
        precondition(options.dampingFraction >= 0, "AccumulatorAwareGPTQ: negative damping \(options.dampingFraction)")
        if case let .a2qPlus(a, b) = options.budget { precondition(a >= 0 && b >= 0, "AccumulatorAwareGPTQ: negative limits \(a), \(b)") }
        if case let .a2q(l) = options.budget { precondition(l >= 0, "AccumulatorAwareGPTQ: negative limit \(l)") }
        guard weights.allSatisfy({ $0.isFinite }) else { throw AccumulatorAwareGPTQError.nonFinite(what: "weights") }
        guard hessian.allSatisfy({ $0.isFinite }) else { throw AccumulatorAwareGPTQError.nonFinite(what: "Hessian") }
        let s = scales ?? defaultScales(weights: weights, outputs: c, inputs: k, weightBits: m)
        precondition(s.count == c && s.allSatisfy { $0 > 0 && $0.isFinite },
                     "AccumulatorAwareGPTQ: need \(c) positive finite scales, got \(s.count)")

        var w = weights
        var u = hessian
        // 1. Dead inputs.
        var dead = 0
        for i in 0..<k where u[i * k + i] == 0 {
            u[i * k + i] = 1
            for r in 0..<c { w[r * k + i] = 0 }
            dead += 1
        }
        // 2. Damping and the upper Cholesky factor of H⁻¹.
        var diagonalSum = 0.0
        for i in 0..<k { diagonalSum += u[i * k + i] }
        let damping = options.dampingFraction * diagonalSum / Double(k)
        for i in 0..<k { u[i * k + i] += damping }
        try upperCholeskyOfInverse(&u, order: k, damping: damping)

        // 3. Soft thresholds λ[c][t] in integer units.
        let tiles = (k + tile - 1) / tile
        let lambda = options.softThreshold
            ? softThresholds(weights: w, outputs: c, inputs: k, scales: s, tileLength: tile, budget: options.budget)
            : [Double](repeating: 0, count: c * tiles)

        // 4. The column loop.
        let qmax = Int64((1 << (m - 1)) - 1)
        let block = min(options.blockSize, k)
        var q = [Int32](repeating: 0, count: c * k)
        var errors = [Double](repeating: 0, count: c * block)
        var alpha = [Int64](repeating: 0, count: c), beta = [Int64](repeating: 0, count: c)
        let fullDifference = options.errorPropagation == .fullDifference
        w.withUnsafeMutableBufferPointer { wb in
            u.withUnsafeBufferPointer { ub in
                errors.withUnsafeMutableBufferPointer { eb in
                    guard let wp = wb.baseAddress, let up = ub.baseAddress, let ep = eb.baseAddress else { return }
                    var i1 = 0
                    while i1 < k {
                        let i2 = min(i1 + block, k), count = i2 - i1
                        for j in 0..<count {
                            let i = i1 + j, t = i / tile
                            if i % tile == 0 {
                                for r in 0..<c { alpha[r] = 0; beta[r] = 0 }
                            }
                            let d = up[i * k + i]
                            for r in 0..<c {
                                let sr = s[r], wv = wp[r * k + i]
                                let x = wv / sr
                                let th = lambda[r * tiles + t]
                                let shrunk = th > 0 ? (x < 0 ? -1.0 : 1.0) * max(abs(x) - th, 0) : x
                                // The running clamp [budgetLow, budgetHigh], then the M-bit range.
                                var budgetLow = Int64.min, budgetHigh = Int64.max
                                switch options.budget {
                                case .unconstrained: break
                                case let .a2qPlus(a, b):
                                    budgetHigh = a - alpha[r]; budgetLow = beta[r] - b
                                case let .a2q(l):
                                    budgetHigh = l - alpha[r] - beta[r]; budgetLow = -budgetHigh
                                }
                                let lo = Double(max(budgetLow, -qmax)), hi = Double(min(budgetHigh, qmax))
                                let value = Int64(min(max(shrunk.rounded(.toNearestOrAwayFromZero), lo), hi))
                                if value > 0 { alpha[r] += value } else { beta[r] -= value }
                                q[r * k + i] = Int32(value)
                                let base = fullDifference || options.budget == .unconstrained
                                    ? (fullDifference ? wv : sr * shrunk)
                                    : sr * min(max(shrunk, Double(budgetLow)), Double(budgetHigh))
                                ep[r * block + j] = (base - sr * Double(value)) / d
                            }
                            let rest = i2 - i - 1
                            if rest > 0 {
                                cblas_dger(CblasRowMajor, Int32(c), Int32(rest), -1, ep + j, Int32(block),
                                           up + i * k + i + 1, 1, wp + i + 1, Int32(k))
                            }
                        }
                        if i2 < k {
                            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(c), Int32(k - i2), Int32(count),
                                        -1, ep, Int32(block), up + i1 * k + i2, Int32(k), 1, wp + i2, Int32(k))
                        }
                        i1 = i2
                    }
                }
            }
        }

        // 5. The proof, in integers.
        let result = AccumulatorAwareGPTQResult(integers: q, scales: s, outputs: c, inputs: k, tileLength: tile,
                                                deadInputs: dead, damping: damping)
        for r in 0..<c {
            for t in 0..<tiles {
                let sums = result.tileSums(output: r, tile: t)
                if !options.budget.admits(positiveSum: sums.positive, negativeMagnitude: sums.negative) {
                    preconditionFailure("AccumulatorAwareGPTQ: channel \(r) tile \(t) has α = \(sums.positive), β = \(sums.negative) outside \(options.budget)")
                }
            }
        }
        return result
    }

    /// AXE's λ per channel and tile (row-major `[outputs, tiles]`) in integer units: the
    /// threshold of the L1-ball projection of `W_c,tile / s_c` (zero-centred for A2Q+) with the
    /// budget's radius; 0 inside the ball or without a budget.
    static func softThresholds(weights w: [Double], outputs c: Int, inputs k: Int, scales s: [Double],
                               tileLength tile: Int, budget: TileBudget) -> [Double] {
        let tiles = (k + tile - 1) / tile
        var lambda = [Double](repeating: 0, count: c * tiles)
        guard let radius = budget.thresholdRadius else { return lambda }
        var scratch = [Double](repeating: 0, count: tile)
        for r in 0..<c {
            for t in 0..<tiles {
                let start = t * tile, count = min(tile, k - start)
                var mean = 0.0
                if budget.centresTiles {
                    for i in 0..<count { mean += w[r * k + start + i] / s[r] }
                    mean /= Double(count)
                }
                var total = 0.0
                for i in 0..<count {
                    scratch[i] = abs(w[r * k + start + i] / s[r] - mean)
                    total += scratch[i]
                }
                if total > radius {
                    lambda[r * tiles + t] = scratch.withUnsafeMutableBufferPointer { v in
                        v.baseAddress.map { EuclideanProjection.threshold(magnitudes: $0, count: count, total: total, radius: radius) } ?? 0
                    }
                }
            }
        }
        return lambda
    }

    /// Replaces the damped `H` (row-major, symmetric, `order × order`) by the upper Cholesky
    /// factor `U` of `H⁻¹` (`H⁻¹ = UᵀU`), zero below the diagonal. Column-major LAPACK sees the
    /// row-major upper triangle as its lower one, so `'L'` there is `U` here.
    static func upperCholeskyOfInverse(_ h: inout [Double], order k: Int, damping: Double) throws {
        var uplo = CChar(UInt8(ascii: "L"))
        var n = blasint(k), lda = blasint(k), info: blasint = 0
        h.withUnsafeMutableBufferPointer { _ = dpotrf_(&uplo, &n, $0.baseAddress, &lda, &info) }
        guard info == 0 else {
            throw AccumulatorAwareGPTQError.hessianNotPositiveDefinite(stage: "H + ηI", minor: Int(info), damping: damping)
        }
        h.withUnsafeMutableBufferPointer { _ = dpotri_(&uplo, &n, $0.baseAddress, &lda, &info) }
        guard info == 0 else {
            throw AccumulatorAwareGPTQError.hessianNotPositiveDefinite(stage: "inverse of H + ηI", minor: Int(info), damping: damping)
        }
        h.withUnsafeMutableBufferPointer { _ = dpotrf_(&uplo, &n, $0.baseAddress, &lda, &info) }
        guard info == 0 else {
            throw AccumulatorAwareGPTQError.hessianNotPositiveDefinite(stage: "(H + ηI)⁻¹", minor: Int(info), damping: damping)
        }
        for i in 1..<max(k, 1) {
            for j in 0..<i { h[i * k + j] = 0 }
        }
    }

}
