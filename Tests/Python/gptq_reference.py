#!/usr/bin/env python3
"""An independent NumPy reference of GPTQ and of AXE's accumulator-aware GPTQ (docs/AXE.md).

Written from the algorithm's description, not from a2q's Swift code: unblocked (one outer-product
update per column over all later columns), H^-1 by np.linalg.inv, its Cholesky factor by
np.linalg.cholesky, the soft threshold by the sort-based L1-ball projection (Duchi et al. 2008).

Usage: gptq_reference.py FOLDER...
Each FOLDER holds params.json {outputs, inputs, weight_bits, tile (0 = K), budget ("none", "a2q+",
"a2q"), A, B, L, soft (0/1), propagation ("full"/"rounding"), damping}, and little-endian
float64 files weights.bin [outputs*inputs], hessian.bin [inputs*inputs], scales.bin [outputs].
Writes q.bin: int32 [outputs*inputs].
"""
import json
import os
import sys

import numpy as np


def l1_threshold(v, radius):
    """theta with sum(max(|v| - theta, 0)) == radius, 0 inside the ball (sort-based)."""
    u = np.sort(np.abs(v))[::-1]
    if u.sum() <= radius:
        return 0.0
    cs = np.cumsum(u)
    j = np.arange(1, len(u) + 1)
    ok = np.nonzero(u * j > cs - radius)[0]
    if len(ok) == 0:  # radius 0: everything shrinks to zero
        return float(u[0])
    rho = ok[-1]
    return float((cs[rho] - radius) / (rho + 1))


def round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize(W, H, s, p):
    W = W.copy()
    H = H.copy()
    C, K = W.shape
    M = p["weight_bits"]
    T = p["tile"] or K
    budget = p["budget"]
    qmax = 2 ** (M - 1) - 1

    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += p["damping"] * np.mean(np.diag(H)) * np.eye(K)
    U = np.linalg.cholesky(np.linalg.inv(H)).T  # upper, H^-1 = U^T U

    n_tiles = (K + T - 1) // T
    lam = np.zeros((C, n_tiles))
    if p["soft"] and budget != "none":
        radius = float(p["A"] + p["B"]) if budget == "a2q+" else float(p["L"])
        for c in range(C):
            for t in range(n_tiles):
                v = W[c, t * T:(t + 1) * T] / s[c]
                if budget == "a2q+":
                    v = v - v.mean()
                lam[c, t] = l1_threshold(v, radius)

    Q = np.zeros((C, K), dtype=np.int64)
    pos = np.zeros(C, dtype=np.int64)
    neg = np.zeros(C, dtype=np.int64)
    for i in range(K):
        t = i // T
        if i % T == 0:
            pos[:] = 0
            neg[:] = 0
        w = W[:, i].copy()
        x = w / s
        xs = np.sign(x) * np.maximum(np.abs(x) - lam[:, t], 0.0)
        xs = np.where(lam[:, t] > 0, xs, x)
        # the running clamp (budget only), then the M-bit range
        b_hi = np.full(C, np.inf)
        b_lo = np.full(C, -np.inf)
        if budget == "a2q+":
            b_hi = (p["A"] - pos).astype(float)
            b_lo = -(p["B"] - neg).astype(float)
        elif budget == "a2q":
            b_hi = (p["L"] - pos - neg).astype(float)
            b_lo = -b_hi
        hi = np.minimum(b_hi, qmax)
        lo = np.maximum(b_lo, -qmax)
        q = np.clip(round_half_away(xs), lo, hi).astype(np.int64)
        pos += np.maximum(q, 0)
        neg += np.maximum(-q, 0)
        Q[:, i] = q
        base = w if p["propagation"] == "full" else s * np.clip(xs, b_lo, b_hi)
        err = (base - s * q) / U[i, i]
        W[:, i:] -= np.outer(err, U[i, i:])
    return Q


def main():
    for folder in sys.argv[1:]:
        run(folder)


def run(folder):
    with open(os.path.join(folder, "params.json")) as f:
        p = json.load(f)
    C, K = p["outputs"], p["inputs"]
    W = np.fromfile(os.path.join(folder, "weights.bin"), dtype="<f8").reshape(C, K)
    H = np.fromfile(os.path.join(folder, "hessian.bin"), dtype="<f8").reshape(K, K)
    s = np.fromfile(os.path.join(folder, "scales.bin"), dtype="<f8")
    Q = quantize(W, H, s, p)
    Q.astype("<i4").tofile(os.path.join(folder, "q.bin"))


if __name__ == "__main__":
    main()
