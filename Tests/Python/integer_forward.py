"""An independent integer forward pass of an a2q export, written from docs/CHECKPOINT.md only
(tests only). Writes the last layer's int64 accumulators for the first N test images of an
MNIST-format or CIFAR-10 binary folder, to compare with the Swift engine's bit for bit.
Residual blocks, global and window average pooling follow the document's definitions.

    python3 integer_forward.py MODEL.h5 DATA_DIR N OUT.bin [--overflow wrap|saturate|wide]
                               [--bits NAME=P ...] [--counts OUT.json] [--outputs A2Q_OUTPUTS.h5]

With --overflow and --bits it models each dot product in a signed P-bit register, as the
document defines it: products added one at a time in the weight tensor's row-major order
(input channel, then kernel row, then kernel column; padding contributes zeros; a grouped
convolution's output channel o reads only the input channels of its group o // (out/groups)), `wrap` keeping
the low P bits of the exact sum (two's complement), `saturate` clamping after every addition,
`wide` exact. It counts, per layer, the dot products whose final exact sum leaves the range
and those where any partial sum does. A global average pool's per-channel sum is such a register
too (the H·W integers added in row-major order), with the pool's own `accumulator_bits`, and so
is a window average pool's sum of each window (its kernel x kernel integers in row-major order,
padding adding zeros).

A tiled layer (attributes `accumulator_tile` T and `outer_accumulator_bits`, docs/CHECKPOINT.md
"Tiles") cuts each dot product's products, in the same order, into tiles of T: each tile is
such a register of `accumulator_bits` (P) bits starting at 0, and the tiles' register values
(after the mode) are added one by one in an outer register of `outer_accumulator_bits`, in the
same mode. Its counts: `tile_sums`, tile `final_overflows`/`partial_overflows`, and per dot
product `outer_final_overflows`/`outer_partial_overflows`.

With --outputs it reads the file `a2q eval --integer --outputs` wrote (docs/CHECKPOINT.md,
"Evaluation outputs") for the same N images and exits 1 unless its predictions and labels are
this reference's, its class scores equal bit for bit, and every accumulator it recorded equals
this reference's register values.
"""
import argparse
import gzip
import json
import os

import h5py
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("data")
parser.add_argument("count", type=int)
parser.add_argument("out")
parser.add_argument("--overflow", choices=["wrap", "saturate", "wide"],
                    help="default: the --outputs file's mode, else wide")
parser.add_argument("--bits", nargs="*", default=[], help="NAME=P overrides of layers' accumulator_bits")
parser.add_argument("--counts", help="write per-layer overflow counts here (JSON)")
parser.add_argument("--outputs", help="an a2q eval --outputs file to compare with this reference")
args = parser.parse_args()
overrides = {k: int(v) for k, v in (b.split("=") for b in args.bits)}
if args.overflow is None:
    args.overflow = "wide"
    if args.outputs:
        with h5py.File(args.outputs, "r") as out:
            args.overflow = out.attrs.get("overflow", "wide")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def register(products, bits, mode):
    """products: [D, K] int64, in accumulation order. Returns (result [D], final, partial)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    partial_sums = np.cumsum(products, axis=1)
    exact = partial_sums[:, -1] if products.shape[1] else np.zeros(products.shape[0], np.int64)
    final = int(((exact < lo) | (exact > hi)).sum())
    partial = int(((partial_sums < lo) | (partial_sums > hi)).any(axis=1).sum())
    if mode == "wrap":
        result = ((exact - lo) % (1 << bits)) + lo
    elif mode == "saturate":
        result = np.zeros(products.shape[0], np.int64)
        for k in range(products.shape[1]):
            result = np.clip(result + products[:, k], lo, hi)
    else:
        result = exact
    return result, final, partial


if os.path.exists(os.path.join(args.data, "test_batch.bin")):
    # CIFAR-10 binary: records of 1 label byte and 3x32x32 pixels (channel planes).
    records = np.fromfile(os.path.join(args.data, "test_batch.bin"), dtype=np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    images = records[:args.count, 1:]
    labels = records[:args.count, 0]
else:
    name = "t10k-images-idx3-ubyte"
    path = os.path.join(args.data, name + ".gz")
    images = read_idx(path if os.path.exists(path) else os.path.join(args.data, name))[:args.count]
    name = "t10k-labels-idx1-ubyte"
    path = os.path.join(args.data, name + ".gz")
    labels = read_idx(path if os.path.exists(path) else os.path.join(args.data, name))[:args.count]

counts = {}
last = {"acc": None}
recorded = {}   # every accumulator's register values, by name, in execution order


def run(f, ops, x, scale):
    """Runs a list of topology entries on x (integers after a quantize, floats after a layer,
    an add or a pool); returns (x, scale of the integers in x)."""
    for op in ops:
        kind = op["op"]
        if kind == "input":
            scale = np.float32(op["scale"])
            continue
        if kind in ("conv2d", "linear"):
            g = f["layers"][op["name"]]
            w = g["weight_int"][()].astype(np.int64)
            bits = overrides.get(op["name"], int(g.attrs["accumulator_bits"]))
            mult = g["multiplier"][()].astype(np.float32)
            offset = g["offset"][()].astype(np.float32)
            o = w.shape[0]
            groups = 1
            if kind == "conv2d":
                stride, pad = int(g.attrs["stride"]), int(g.attrs["padding"])
                # Grouped convolution: the layer group's `groups` attribute (absent: 1), as the topology says.
                groups = int(g.attrs.get("groups", 1))
                assert groups == int(op.get("groups", 1)), f"{op['name']}: topology and layer disagree on groups"
                _, c, kh, kw = w.shape          # c = input channels per group
                n, channels, h, wd = x.shape
                assert channels == c * groups and o % groups == 0
                xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
                ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
                # per group: rows[n, y, x, k] with k in the weight's row-major order (c, i, j) over the group's channels
                group_rows = [np.stack([xp[:, gi * c + ci, i:i + stride * ho:stride, j:j + stride * wo:stride]
                                        for ci in range(c) for i in range(kh) for j in range(kw)], axis=-1).reshape(n * ho * wo, -1)
                              for gi in range(groups)]
            else:
                group_rows = [x.reshape(x.shape[0], -1)]
            wflat = w.reshape(o, -1)
            per_group = o // groups
            def rows_of(ch):
                return group_rows[ch // per_group]
            if args.overflow == "wide" and not args.counts:
                sums = np.concatenate([group_rows[gi] @ wflat[gi * per_group:(gi + 1) * per_group].T for gi in range(groups)], axis=1)
            else:
                sums = np.zeros((group_rows[0].shape[0], o), np.int64)
                final = partial = outer_final = outer_partial = 0
                tile = int(g.attrs["accumulator_tile"]) if "accumulator_tile" in g.attrs else None
                outer_bits = overrides.get(op["name"] + ".outer", int(g.attrs["outer_accumulator_bits"])) if tile else None
                for ch in range(o):
                    products = rows_of(ch) * wflat[ch][None, :]
                    if tile is None:
                        result, f_count, p_count = register(products, bits, args.overflow)
                    else:
                        pieces = [register(products[:, t:t + tile], bits, args.overflow) for t in range(0, products.shape[1], tile)]
                        f_count = sum(piece[1] for piece in pieces)
                        p_count = sum(piece[2] for piece in pieces)
                        result, of_count, op_count = register(np.stack([piece[0] for piece in pieces], axis=1), outer_bits, args.overflow)
                        outer_final += of_count
                        outer_partial += op_count
                    sums[:, ch] = result
                    final += f_count
                    partial += p_count
                counts[op["name"]] = {"dot_products": int(sums.size), "final_overflows": final,
                                      "partial_overflows": partial, "accumulator_bits": bits}
                if tile is not None:
                    counts[op["name"]].update({"tile_sums": int(sums.size) * len(range(0, wflat.shape[1], tile)),
                                               "outer_final_overflows": outer_final, "outer_partial_overflows": outer_partial,
                                               "accumulator_tile": tile, "outer_accumulator_bits": outer_bits})
            if kind == "conv2d":
                acc = sums.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
                y = acc.astype(np.float32) * mult[None, :, None, None] + offset[None, :, None, None]
            else:
                acc = sums
                y = acc.astype(np.float32) * mult[None, :] + offset[None, :]
            last["acc"] = acc
            recorded[op["name"]] = acc
            x = y
        elif kind == "relu":
            x = np.maximum(x, np.float32(0))
        elif kind == "quantize":
            lo, hi = (-(2 ** (op["bits"] - 1)), 2 ** (op["bits"] - 1) - 1) if op["signed"] else (0, 2 ** op["bits"] - 1)
            inverse = np.float32(1) / np.float32(op["scale"])
            x = np.clip(np.rint(x.astype(np.float32) * inverse), lo, hi).astype(np.int64)
            scale = np.float32(op["scale"])
        elif kind == "maxpool":
            k, s = op["kernel"], op["stride"]
            n, c, h, wd = x.shape
            ho, wo = (h - k) // s + 1, (wd - k) // s + 1
            x = np.max(np.stack([x[:, :, i:i + s * ho:s, j:j + s * wo:s] for i in range(k) for j in range(k)]), axis=0)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "pixelshuffle":
            # y[n, c, h*r + i, w*r + j] = x[n, c*r*r + i*r + j, h, w] (PyTorch's PixelShuffle).
            r = op["factor"]
            n, crr, h, wd = x.shape
            x = x.reshape(n, crr // (r * r), r, r, h, wd).transpose(0, 1, 4, 2, 5, 3).reshape(n, crr // (r * r), h * r, wd * r)
        elif kind == "globalavgpool":
            # The exact integer sum per channel, then Float(sum) * (scale / (H*W)) in float32.
            # Per channel, the H*W integers added in row-major order in the pool's P-bit register.
            n, c, h, wd = x.shape
            bits = overrides.get(op["name"], int(op["accumulator_bits"]))
            terms = x.astype(np.int64).reshape(n * c, h * wd)
            total, final, partial = register(terms, bits, args.overflow)
            counts[op["name"]] = {"dot_products": int(n * c), "final_overflows": final,
                                  "partial_overflows": partial, "accumulator_bits": bits}
            total = total.reshape(n, c)
            recorded[op["name"]] = total
            x = total.astype(np.float32) * (np.float32(scale) / np.float32(h * wd))
        elif kind == "avgpool":
            # Per image, channel and output position, the kernel x kernel window of the input padded with
            # `padding` zeros, added in row-major order (kernel row, then column) in the pool's P-bit
            # register; then Float(sum) * (scale / kernel^2) in float32: the padded zeros count in the divisor.
            k, s, pad = op["kernel"], op["stride"], op["padding"]
            n, c, h, wd = x.shape
            ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
            bits = overrides.get(op["name"], int(op["accumulator_bits"]))
            xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            terms = np.stack([xp[:, :, i:i + s * ho:s, j:j + s * wo:s] for i in range(k) for j in range(k)], axis=-1)
            total, final, partial = register(terms.reshape(-1, k * k), bits, args.overflow)
            counts[op["name"]] = {"dot_products": int(n * c * ho * wo), "final_overflows": final,
                                  "partial_overflows": partial, "accumulator_bits": bits}
            total = total.reshape(n, c, ho, wo)
            recorded[op["name"]] = total
            x = total.astype(np.float32) * (np.float32(scale) / np.float32(k * k))
        elif kind == "residual":
            # Both branches from the same integers; the join is Float(b)*s_b + Float(c)*s_c in float32.
            b, sb = run(f, op["body"], x, scale)
            c, sc = run(f, op["shortcut"], x, scale) if "shortcut" in op else (x, scale)
            x = b.astype(np.float32) * np.float32(sb) + c.astype(np.float32) * np.float32(sc)
        else:
            raise SystemExit(f"unknown op {kind}")
    return x, scale


with h5py.File(args.model, "r") as f:
    assert f.attrs["format"] == "a2q-export"
    topology = json.loads(f.attrs["topology"])
    shape = [int(v) for v in f["input_shape"][()]]
    x = images.astype(np.int64).reshape([images.shape[0]] + shape)   # [N, C, H, W] integers
    scores, _ = run(f, topology, x, np.float32(1))
acc = last["acc"]
acc.astype(np.int64).tofile(args.out)
if args.counts:
    with open(args.counts, "w") as out:
        json.dump(counts, out)
print(f"wrote {acc.size} accumulators")

if args.outputs:
    problems = []
    with h5py.File(args.outputs, "r") as out:
        if out.attrs["format"] != "a2q-eval-outputs" or int(out.attrs["format_version"]) != 1:
            problems.append(f"format {out.attrs['format']} version {out.attrs['format_version']}")
        n = images.shape[0]
        if int(out.attrs["images"]) != n or out["predictions"].shape != (n,):
            problems.append(f"{out.attrs['images']} images, expected {n}")
        else:
            if out.attrs.get("overflow") not in (None, args.overflow):
                problems.append(f"overflow mode {out.attrs.get('overflow')}, reference {args.overflow}")
            if not np.array_equal(out["labels"][()], labels.astype(np.int32)):
                problems.append("labels differ")
            if out["scores"].dtype != np.float32 or not np.array_equal(out["scores"][()].view(np.uint32), scores.astype(np.float32).view(np.uint32)):
                problems.append("class scores differ")
            if not np.array_equal(out["predictions"][()], np.argmax(scores, axis=1).astype(np.int32)):
                problems.append("predictions differ")
            if "accumulators" in out:
                group = out["accumulators"]
                order = json.loads(group.attrs["order"])
                if order != list(recorded):
                    problems.append(f"accumulator order {order}, reference {list(recorded)}")
                for name in order:
                    if name not in recorded or group[name].dtype != np.int64 or not np.array_equal(group[name][()], recorded[name]):
                        problems.append(f"accumulators of {name} differ")
                print(f"compared {len(order)} accumulators")
    if problems:
        raise SystemExit("outputs differ from the reference: " + "; ".join(problems))
    print(f"{args.outputs} equals the reference on {images.shape[0]} images")
