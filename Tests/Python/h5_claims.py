#!/usr/bin/env python3
"""h5py tools for the tests of the docs' claims (Tests/A2QTests: ValueRulesTests, SchemaV1Tests,
DamagedCheckpointSkipTests, ToolCommandTests), independent of a2q's own HDF5 code.

  set SPEC.json       copies and mutates files: a JSON list of {"source", "target", "dataset",
                      "index", "value"}; value is a number or "nan", "inf", "-inf". The dataset
                      keeps its type, shape, chunking and checksum filter (HDF5 recomputes it).
  flip FILE DATASET   flips one bit in the middle of the stored bytes of the dataset's first
                      chunk (after the write, its Fletcher32 checksum no longer matches).
  v1-checkpoint FILE  rewrites a schema-2 checkpoint into schema-1 form, as docs/CHECKPOINT.md
                      ("Migration from schema v1") describes it: format_version 1, no
                      model_description attribute, no input_shape dataset; the stored config
                      keeps only the keys a2q had when it wrote version 1.
  v1-export FILE      an export of a chain as version 1 (format_version 1).
  weights FILE SEED D0 D1 [D2 D3]
                      writes a float32 dataset 'weight' of that shape (normal, σ = 0.1) for `a2q quantize`.
  check-quantized W Q QUANTIZER M N P
                      checks `a2q quantize`'s output Q against the weights W from the definitions
                      (docs/CHECKPOINT.md's worst case, P_min, the A2Q/A2Q+ bounds, M-bit range; qat:
                      q = rint(w / scale)); prints a JSON summary to compare with the tool's --json.
  compare-exports A B every dataset bit for bit and every attribute (root and groups) equal, but the
                      root's `source` (the checkpoint it came from); prints "equal" or what differs.
"""
import json
import shutil
import sys

import h5py
import numpy as np

# The configuration keys of the a2q that wrote schema 1 (TrainConfig's CodingKeys then).
V1_CONFIG_KEYS = {
    "model", "quantizer", "weight-bits", "act-bits", "accumulator-bits", "first-last", "layer-accumulator-bits",
    "epochs", "max-steps", "float-epochs", "batch-size", "optimizer", "lr", "float-lr", "weight-decay", "schedule",
    "warmup-steps", "seed", "data", "train-subset", "out", "init", "regularizer", "quantizer-lr-scale",
    "project-directions", "distill", "distill-temperature", "calibration-batches", "log-every", "check-every",
    "watchdog-seconds", "allreduce-bucket-mb", "checkpoint-every", "keep-checkpoints", "resume", "init-from",
    "stop-after-steps",
}


def value_of(text):
    return {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}.get(str(text), text)


def mutate(spec_path):
    for item in json.load(open(spec_path)):
        shutil.copyfile(item["source"], item["target"])
        with h5py.File(item["target"], "r+") as f:
            d = f[item["dataset"]]
            data = d[()]
            flat = data.reshape(-1)
            flat[item["index"]] = value_of(item["value"])
            d[...] = flat.reshape(data.shape)


def flip(path, dataset):
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    offset = info.byte_offset + (info.size - 4) // 2  # inside the data, not the 4-byte checksum
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)[0]
        raw.seek(offset)
        raw.write(bytes([byte ^ 0x10]))
    print(offset)


def v1_checkpoint(path):
    with h5py.File(path, "r+") as f:
        assert f.attrs["format_version"] == 3, "expected a schema-3 checkpoint"
        f.attrs["format_version"] = 1
        del f.attrs["model_description"]
        del f["input_shape"]
        config = json.loads(f.attrs["config"])
        f.attrs["config"] = json.dumps({k: v for k, v in config.items() if k in V1_CONFIG_KEYS}, separators=(",", ":"))


def v1_export(path):
    with h5py.File(path, "r+") as f:
        assert f.attrs["format"] == "a2q-export" and f.attrs["format_version"] == 3
        assert all(op["op"] not in ("residual", "globalavgpool") for op in json.loads(f.attrs["topology"])), "v1 exports are chains"
        f.attrs["format_version"] = 1


def weights(path, seed, *shape):
    rng = np.random.default_rng(int(seed))
    with h5py.File(path, "w") as f:
        f["weight"] = (0.1 * rng.standard_normal([int(d) for d in shape])).astype(np.float32)


def check_quantized(w_path, q_path, quantizer, m, n, p):
    m, n, p = int(m), int(n), int(p)
    problems = []
    with h5py.File(w_path, "r") as f:
        w = f["weight"][()].astype(np.float64)
    with h5py.File(q_path, "r") as f:
        q = f["weight_int"][()]
        if q.shape != w.shape or q.dtype.kind != "i":
            problems.append(f"weight_int {q.dtype} {q.shape} for weights {w.shape}")
        q = q.astype(np.int64).reshape(w.shape[0], -1)
        stored = {k: f[k][()].astype(np.int64) for k in ("l1_norm", "acc_min", "acc_max", "p_min")}
        scale = f["scale"][()].astype(np.float64)
        attrs = dict(f.attrs)
    c, d = 0, 2 ** n - 1  # unsigned N-bit inputs
    alpha = np.where(q > 0, q, 0).sum(1)
    beta = np.where(q < 0, q, 0).sum(1)
    l1 = np.abs(q).sum(1)
    acc_max, acc_min = d * alpha + c * beta, c * alpha + d * beta
    p_min = np.array([next(b for b in range(1, 64) if lo >= -2 ** (b - 1) and hi <= 2 ** (b - 1) - 1)
                      for lo, hi in zip(acc_min, acc_max)])
    for name, mine in (("l1_norm", l1), ("acc_min", acc_min), ("acc_max", acc_max), ("p_min", p_min)):
        if not np.array_equal(stored[name], mine):
            problems.append(f"{name} differs from the definition")
    if np.abs(q).max() > 2 ** (m - 1) - 1:
        problems.append(f"a weight beyond the {m}-bit narrow range")
    bound = None
    if quantizer == "a2q":
        bound = (2 ** (p - 1) - 1) * 2.0 ** (-n)
    elif quantizer == "a2q+":
        bound = (2 ** p - 2) / (2 ** n - 1)
    if bound is not None and (l1 > bound).any():
        problems.append(f"an L1 norm {l1.max()} above the bound {bound}")
    if quantizer == "qat":
        expected = np.clip(np.rint(w.reshape(w.shape[0], -1) / scale[:, None]), -(2 ** (m - 1) - 1), 2 ** (m - 1) - 1)
        if not np.array_equal(expected, q):
            problems.append("q is not rint(w / scale)")
    fits = bool((p_min <= p).all())
    if int(attrs.get("overflow_free", -1)) != int(fits):
        problems.append(f"overflow_free {attrs.get('overflow_free')} but p_min {p_min.max()} against P = {p}")
    for key, value in (("weight_bits", m), ("input_bits", n), ("accumulator_bits", p)):
        if int(attrs.get(key, -1)) != value:
            problems.append(f"attribute {key} = {attrs.get(key)}, expected {value}")
    print(json.dumps({"channels": int(w.shape[0]), "fan_in": int(q.shape[1]), "max_l1_norm": int(l1.max()),
                      "largest_p_min": int(p_min.max()), "all_channels_fit": fits, "bound": bound,
                      "sparsity": float((q == 0).mean()), "problems": problems}))
    sys.exit(1 if problems else 0)


def attributes(obj, skip=()):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items() if k not in skip}


def compare_exports(a, b):
    problems = []
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        if attributes(x, ("source",)) != attributes(y, ("source",)):
            problems.append("root attributes")
        names = []
        x.visit(names.append)
        other = []
        y.visit(other.append)
        if sorted(names) != sorted(other):
            problems.append(f"objects: {sorted(set(names) ^ set(other))}")
        for name in names:
            if name not in y:
                continue
            p, q = x[name], y[name]
            if attributes(p) != attributes(q):
                problems.append(f"{name}: attributes")
            if isinstance(p, h5py.Dataset):
                u, v = p[()], q[()]
                if p.dtype != q.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                    problems.append(f"{name}: values")
    print("equal" if not problems else "differ: " + "; ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    {"set": mutate, "flip": flip, "v1-checkpoint": v1_checkpoint, "v1-export": v1_export,
     "compare-exports": compare_exports, "weights": weights, "check-quantized": check_quantized}[command](*arguments)
