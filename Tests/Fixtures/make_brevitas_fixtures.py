"""Generates brevitas_a2q.json: integer weights of Brevitas 0.13.4's accumulator-aware weight
quantizers at initialisation, for the cross-check in BrevitasReferenceTests.

Run by hand (needs torch + brevitas==0.13.4, several GiB; not part of the test run):
    python3 -m venv /tmp/brevenv && /tmp/brevenv/bin/pip install brevitas==0.13.4
    /tmp/brevenv/bin/python Tests/Fixtures/make_brevitas_fixtures.py
"""
import json
import pathlib

import numpy as np
import torch
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant import (Int8AccumulatorAwareWeightQuant, Int8AccumulatorAwareZeroCenterWeightQuant,
                            Int8ActPerTensorFloat, Uint8ActPerTensorFloat)

CASES = [
    # quantizer, M, N, signed, P, out, K, distribution
    ("a2q", 8, 8, False, 16, 8, 288, "uniform"),
    ("a2q", 8, 8, False, 20, 4, 3136, "uniform"),
    ("a2q", 4, 4, False, 12, 6, 50, "normal"),
    ("a2q", 8, 8, True, 14, 5, 64, "heavy"),
    ("a2q+", 8, 8, False, 16, 8, 288, "uniform"),
    ("a2q+", 8, 8, False, 14, 4, 3136, "uniform"),
    ("a2q+", 4, 4, False, 12, 6, 50, "normal"),
    ("a2q+", 6, 5, True, 15, 5, 64, "heavy"),
    ("a2q", 8, 8, False, 32, 3, 20, "uniform"),
]

rng = np.random.default_rng(20261130)
out = []
for kind, m, n, signed, p, channels, k, dist in CASES:
    if dist == "uniform":
        w = rng.uniform(-1 / np.sqrt(k), 1 / np.sqrt(k), (channels, k))
    elif dist == "normal":
        w = rng.normal(0, 0.1, (channels, k))
    else:
        w = rng.standard_t(2, (channels, k)) * 0.05
    w = w.astype(np.float32)
    act = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    quant_in = QuantIdentity(act_quant=act, bit_width=n, return_quant_tensor=True)
    weight_quant = Int8AccumulatorAwareWeightQuant if kind == "a2q" else Int8AccumulatorAwareZeroCenterWeightQuant
    layer = QuantLinear(k, channels, bias=False, weight_quant=weight_quant, weight_bit_width=m,
                        weight_accumulator_bit_width=p)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    layer.weight_quant.init_tensor_quant()
    quant_in.eval()
    layer.eval()
    with torch.no_grad():
        x = quant_in(torch.rand(2, k) * (1 if not signed else 2) - (0 if not signed else 1))
        qw = layer.quant_weight(x)
    q = qw.int().numpy().astype(int)
    out.append({"quantizer": kind, "weight_bits": m, "input_bits": n, "input_signed": signed,
                "accumulator_bits": p, "weight": w.tolist(), "weight_int": q.tolist(),
                "scale": qw.scale.reshape(-1).numpy().astype(float).tolist()})
    print(kind, m, n, signed, p, "L1 max", np.abs(q).sum(1).max(), "zeros", float((q == 0).mean()))

path = pathlib.Path(__file__).with_name("brevitas_a2q.json")
path.write_text(json.dumps({"brevitas": "0.13.4", "cases": out}))
print("wrote", path)
