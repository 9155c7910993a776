"""Independent check of an a2q checkpoint with h5py and NumPy (tests only).

Reads the file as a NumPy user would from docs/CHECKPOINT.md: attributes come back as str/int,
and each quantized layer's acc_min/acc_max/l1_norm/p_min are recomputed from weight_int; with
`a2q inspect --json` output, its per-layer facts and compressibility (zlib level 9 of the
integers as int8/int16, zero-order entropy, packed size) are recomputed too.
"""
import json
import math
import sys
import zlib

import h5py
import numpy as np

path = sys.argv[1]
inspected = json.loads(open(sys.argv[2]).read()) if len(sys.argv) > 2 else None
with h5py.File(path, "r") as f:
    assert f.attrs["format"] == "a2q-checkpoint" and isinstance(f.attrs["format"], str), f.attrs["format"]
    assert int(f.attrs["format_version"]) == 3
    # Schema 2: the model's tree and the image shape it takes.
    description = json.loads(f.attrs["model_description"])
    assert description["format"] == "a2q-model" and isinstance(description["layers"], list), description
    assert [int(v) for v in f["input_shape"][()]] == [1, 28, 28], f["input_shape"][()]
    assert isinstance(f.attrs["phase"], str)
    config = json.loads(f.attrs["config"])
    layers = json.loads(f.attrs["layers"])
    assert isinstance(layers, list) and config["model"] == f.attrs["model"]
    checked = 0
    for name in f["model"]:
        group = f["model"][name]
        if "weight_int" not in group:
            continue
        q = group["weight_int"][()].astype(np.int64).reshape(group["weight_int"].shape[0], -1)
        n = int(group.attrs["input_bits"])
        signed = bool(group.attrs["input_signed"])
        lo, hi = (-(2 ** (n - 1)), 2 ** (n - 1) - 1) if signed else (0, 2 ** n - 1)
        alpha = np.where(q > 0, q, 0).sum(1)
        beta = np.where(q < 0, q, 0).sum(1)
        acc_max = hi * alpha + lo * beta
        acc_min = lo * alpha + hi * beta
        assert np.array_equal(acc_max, group["acc_max"][()]), name
        assert np.array_equal(acc_min, group["acc_min"][()]), name
        assert np.array_equal(np.abs(q).sum(1), group["l1_norm"][()]), name
        p = int(group.attrs["accumulator_bits"])
        fits = bool(((acc_max <= 2 ** (p - 1) - 1) & (acc_min >= -(2 ** (p - 1)))).all())
        assert fits == bool(group.attrs["overflow_free"]), name
        p_min = [next(b for b in range(1, 64) if mx <= 2 ** (b - 1) - 1 and mn >= -(2 ** (b - 1)))
                 for mn, mx in zip(acc_min, acc_max)]
        assert np.array_equal(np.array(p_min), group["p_min"][()]), name
        assert isinstance(group.attrs["quantizer"], str) and isinstance(group.attrs["rounding"], str)
        assert group["weight_scale"].dtype == np.float32 and group["weight_int"].dtype in (np.int8, np.int16)
        if inspected is not None:
            # `a2q inspect --json` must report the same per-channel facts as these integers give.
            layer = next(l for l in inspected["layers"] if l["name"] == name)
            assert [c["acc_min"] for c in layer["channels"]] == acc_min.tolist(), name
            assert [c["acc_max"] for c in layer["channels"]] == acc_max.tolist(), name
            assert [c["p_min"] for c in layer["channels"]] == p_min, name
            assert abs(layer["sparsity"] - float((q == 0).mean())) < 1e-12, name
            m = int(group.attrs["weight_bits"])
            stored = q.astype(np.int8 if m <= 8 else "<i2").tobytes()
            _, counts = np.unique(q, return_counts=True)
            p_values = counts / q.size
            entropy = float(-(p_values * np.log2(p_values)).sum())
            c = next(c for c in inspected["compressibility"]["layers"] if c["name"] == name)
            assert c["weights"] == q.size and c["weight_bits"] == m and c["float32_bytes"] == 4 * q.size, (name, c)
            assert c["packed_bytes"] == math.ceil(q.size * m / 8), (name, c)
            assert c["zlib_bytes"] == len(zlib.compress(stored, 9)), (name, c, len(zlib.compress(stored, 9)))
            assert abs(c["entropy_bits"] - entropy) < 1e-9, (name, c, entropy)
        checked += 1
if inspected is not None:
    c = inspected["compressibility"]
    total = c["total"]
    assert len(c["layers"]) == checked, (len(c["layers"]), checked)
    for key in ["weights", "float32_bytes", "packed_bytes", "zlib_bytes"]:
        assert total[key] == sum(l[key] for l in c["layers"]), key
print(f"checked {checked} quantized layers")
