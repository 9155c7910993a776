"""An independent integer forward pass of an a2q export, written from docs/CHECKPOINT.md only
(tests only). Prints the last layer's int64 accumulators for the first N test images of an
MNIST-format folder, to compare with the Swift engine's bit for bit.

    python3 integer_forward.py MODEL.h5 DATA_DIR N OUT.bin
"""
import gzip
import json
import os
import sys

import h5py
import numpy as np

model_path, data_dir, count, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


name = "t10k-images-idx3-ubyte"
path = os.path.join(data_dir, name + ".gz")
images = read_idx(path if os.path.exists(path) else os.path.join(data_dir, name))[:count]

with h5py.File(model_path, "r") as f:
    assert f.attrs["format"] == "a2q-export"
    topology = json.loads(f.attrs["topology"])
    x = images.astype(np.int64)[:, None, :, :]          # [N, 1, H, W] integers
    acc = None
    for op in topology:
        kind = op["op"]
        if kind == "input":
            continue
        if kind in ("conv2d", "linear"):
            g = f["layers"][op["name"]]
            w = g["weight_int"][()].astype(np.int64)
            mult = g["multiplier"][()].astype(np.float32)
            offset = g["offset"][()].astype(np.float32)
            if kind == "conv2d":
                stride, pad = int(g.attrs["stride"]), int(g.attrs["padding"])
                o, c, kh, kw = w.shape
                n, _, h, wd = x.shape
                xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
                ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
                acc = np.zeros((n, o, ho, wo), dtype=np.int64)
                for i in range(kh):
                    for j in range(kw):
                        patch = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]   # [N, C, Ho, Wo]
                        acc += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
                y = acc.astype(np.float32) * mult[None, :, None, None] + offset[None, :, None, None]
            else:
                acc = x.reshape(x.shape[0], -1) @ w.T
                y = acc.astype(np.float32) * mult[None, :] + offset[None, :]
            x = y
        elif kind == "relu":
            x = np.maximum(x, np.float32(0))
        elif kind == "quantize":
            lo, hi = (-(2 ** (op["bits"] - 1)), 2 ** (op["bits"] - 1) - 1) if op["signed"] else (0, 2 ** op["bits"] - 1)
            inverse = np.float32(1) / np.float32(op["scale"])
            x = np.clip(np.rint(x.astype(np.float32) * inverse), lo, hi).astype(np.int64)
        elif kind == "maxpool":
            k, s = op["kernel"], op["stride"]
            n, c, h, wd = x.shape
            ho, wo = (h - k) // s + 1, (wd - k) // s + 1
            x = np.max(np.stack([x[:, :, i:i + s * ho:s, j:j + s * wo:s] for i in range(k) for j in range(k)]), axis=0)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            raise SystemExit(f"unknown op {kind}")
acc.astype(np.int64).tofile(out_path)
print(f"wrote {acc.size} accumulators")
