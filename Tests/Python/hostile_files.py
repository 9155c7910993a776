"""Writes hostile checkpoints and exports from a real checkpoint and export (tests only):

    python3 hostile_files.py CHECKPOINT EXPORT OUT_DIR

The three files of issue 14:

- OUT_DIR/window.h5: the checkpoint with /data/window declaring 2^40 float64 elements (never
  written, so the file stays small);
- OUT_DIR/bits40.h5: the export with conv2's weight_bits attribute set to 40;
- OUT_DIR/nan-multiplier.h5: the export with one NaN in fc1's multiplier.

and OUT_DIR/cases.json, a list of crafted files each of which a2q must refuse (exit 1) with a
message that names the problem: {"file", "kind" ("checkpoint" or "export"), "expect" (strings the
message must contain), "run": "all" (inspect, verify, eval, eval --integer), "verify" (verify
only: every command reads a file through the same loader), or "validate" (what `--resume`
checks besides the model: the optimizer state and every rank's buffers)}. The inputs
are a cnn-bn run's checkpoint and its export (layers conv1, conv2, fc1 with folded BatchNorm, fc2
without; conv2 and fc1 A2Q+).
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

checkpoint, export, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)


def replace(f, path, data=None, **kwargs):
    """Replaces dataset `path` with `data` (or an unwritten dataset of kwargs' shape and dtype),
    chunked with the Fletcher32 checksum as a2q writes it."""
    parent, name = path.rsplit("/", 1)
    old = f[path]
    del f[path]
    if data is None:
        f[parent].create_dataset(name, chunks=tuple(min(64, n) for n in kwargs["shape"]), fletcher32=True, **kwargs)
    else:
        data = np.asarray(data, dtype=kwargs.get("dtype", old.dtype))
        f[parent].create_dataset(name, data=data, chunks=data.shape, fletcher32=True)


window = os.path.join(out, "window.h5")
shutil.copy(checkpoint, window)
with h5py.File(window, "r+") as f:
    del f["data/window"]
    f["data"].create_dataset("window", shape=(1 << 40,), dtype="f8", chunks=(1024,))

bits = os.path.join(out, "bits40.h5")
shutil.copy(export, bits)
with h5py.File(bits, "r+") as f:
    f["layers/conv2"].attrs["weight_bits"] = 40

nan = os.path.join(out, "nan-multiplier.h5")
shutil.copy(export, nan)
with h5py.File(nan, "r+") as f:
    m = f["layers/fc1/multiplier"][()]
    m[3] = np.nan
    del f["layers/fc1/multiplier"]
    f["layers/fc1"].create_dataset("multiplier", data=m)

cases = []


def case(kind, name, expect, change, run="verify"):
    path = os.path.join(out, name + ".h5")
    shutil.copy(checkpoint if kind == "checkpoint" else export, path)
    with h5py.File(path, "r+") as f:
        change(f)
    cases.append({"file": path, "kind": kind, "expect": expect, "run": run})


def bump(path, index=0, by=1):
    """Adds `by` to element `index` (flat) of an integer dataset, keeping its dtype."""
    def change(f):
        values = f[path][()]
        values.reshape(-1)[index] += by
        replace(f, path, values)
    return change


def set_attribute(owner, name, value):
    return lambda f: f[owner].attrs.__setitem__(name, value)


def topology(edit):
    def change(f):
        items = json.loads(f.attrs["topology"])
        edit(items)
        f.attrs["topology"] = json.dumps(items)
    return change


def layer_entry(items, name):
    return next(item for item in items if item.get("name") == name)


# Checkpoints: the stored integer view is what the parameters quantize to, in shape and type.
case("checkpoint", "ckpt-weight-int-huge",
     ["/model/conv2/weight_int has shape [1048576, 1048576], but the layer's weights have shape [64, 32, 3, 3]"],
     lambda f: replace(f, "model/conv2/weight_int", shape=(1 << 20, 1 << 20), dtype="i1"), run="all")
case("checkpoint", "ckpt-weight-int-changed",
     ["/model/conv2/weight_int is not what the layer's parameters quantize to: 1 of 18432 values differ (first at flat index 5"],
     bump("model/conv2/weight_int", index=5), run="all")
case("checkpoint", "ckpt-weight-int-int16",
     ["/model/fc1/weight_int holds int16 values; a2q stores int8 values there"],
     lambda f: replace(f, "model/fc1/weight_int", f["model/fc1/weight_int"][()], dtype="i2"))
case("checkpoint", "ckpt-weight-int-float",
     ["/model/fc2/weight_int holds float32 values; a2q stores int8 values there"],
     lambda f: replace(f, "model/fc2/weight_int", f["model/fc2/weight_int"][()], dtype="f4"))
case("checkpoint", "ckpt-weight-scale-changed",
     ["/model/conv1/weight_scale is not what the layer's parameters quantize to: 1 of 32 values differ (first at channel 0"],
     lambda f: replace(f, "model/conv1/weight_scale", f["model/conv1/weight_scale"][()] * np.float32([2] + [1] * 31)))
case("checkpoint", "ckpt-acc-max-changed",
     ["/model/fc1/acc_max is not what the integer weights give: 1 of 128 values differ (first at channel 7"],
     bump("model/fc1/acc_max", index=7, by=-1000))
case("checkpoint", "ckpt-p-min-shape",
     ["/model/conv2/p_min has shape [65], but the layer's output channels give shape [64]"],
     lambda f: replace(f, "model/conv2/p_min", np.zeros(65, dtype=np.int32)))
case("checkpoint", "ckpt-accumulator-bits",
     ["attribute", "/model/conv2@accumulator_bits = 12 is not what the layer's P is (16)"],
     set_attribute("model/conv2", "accumulator_bits", 12))
case("checkpoint", "ckpt-overflow-free",
     ["/model/conv1@overflow_free = 0 is not what the integer weights' worst case against P gives (1)"],
     set_attribute("model/conv1", "overflow_free", 0))
case("checkpoint", "ckpt-negative-variance",
     ["/model/bn2/running_var holds a negative variance"],
     lambda f: replace(f, "model/bn2/running_var", -np.abs(f["model/bn2/running_var"][()]) - 1))
case("checkpoint", "ckpt-global-step",
     ["global_step 99 is not earlier_steps + step = 6"],
     set_attribute("/", "global_step", 99), run="all")
case("checkpoint", "ckpt-global-batch",
     ["/data@global_batch = 32, but the checkpoint's configured batch size is 64"],
     set_attribute("data", "global_batch", 32))
case("checkpoint", "ckpt-accuracy",
     ["float_test_accuracy = 79.0 is not a fraction in 0...1"],
     set_attribute("/", "float_test_accuracy", 79.0))
case("checkpoint", "ckpt-layers",
     ["the layers attribute does not list the model's layers"],
     set_attribute("/", "layers", json.dumps(["conv1", "fc2"])))
case("checkpoint", "ckpt-optimizer-kind",
     ["/optimizer is of kind 'SGD' with state [\"exp_avg\", \"exp_avg_sq\"], but the stored configuration's optimizer adam keeps Adam state"],
     set_attribute("optimizer", "kind", "SGD"), run="validate")
case("checkpoint", "ckpt-rank-buffer-variance",
     ["/data/rank_buffers/bn1.running_var holds a negative variance"],
     lambda f: replace(f, "data/rank_buffers/bn1.running_var", -np.abs(f["data/rank_buffers/bn1.running_var"][()]) - 1),
     run="validate")

# Exports: the topology's shapes and formats are those of the layers, the derived datasets those
# of the integer weights.
case("export", "export-topology-shape",
     ["topology entry 1 declares conv2d conv1 of shape [2147483647, 2147483647, 3, 3], but /layers/conv1/weight_int has shape [32, 1, 3, 3]"],
     topology(lambda items: layer_entry(items, "conv1").__setitem__("shape", [2**31 - 1, 2**31 - 1, 3, 3])), run="all")
case("export", "export-topology-no-shape",
     ["topology entry 13 (linear fc2) needs a shape (a list of integers), found none"],
     topology(lambda items: layer_entry(items, "fc2").pop("shape")))
case("export", "export-topology-stride",
     ["topology entry 5 declares conv2d conv2 with stride 2, but /layers/conv2 has stride 1"],
     topology(lambda items: layer_entry(items, "conv2").__setitem__("stride", 2)))
case("export", "export-input-scale",
     ["layer conv2 has input_scale 0.5, but the integers it takes are at scale"],
     set_attribute("layers/conv2", "input_scale", 0.5))
case("export", "export-l1-norm",
     ["/layers/fc1/l1_norm is not what the integer weights give: 1 of 128 values differ (first at channel 0"],
     bump("layers/fc1/l1_norm", index=0, by=1), run="all")
case("export", "export-weight-int-bumped",
     ["/layers/conv2/l1_norm is not what the integer weights give"],
     lambda f: bump("layers/conv2/weight_int", index=int(np.argmax(f["layers/conv2/weight_int"][()].reshape(-1) == 0)))(f))
case("export", "export-l1-bound",
     ["output channel", "above the layer's l1_bound 1.0"],
     set_attribute("layers/fc1", "l1_bound", 1.0))
case("export", "export-quantizer",
     ["quantizer 'banana' is not one a2q writes (qat, a2q, a2q+)"],
     set_attribute("layers/conv2", "quantizer", "banana"))
case("export", "export-rounding",
     ["rounding 'nearest' does not go with quantizer a2q+ (which rounds toward_zero)"],
     set_attribute("layers/fc1", "rounding", "nearest"))
case("export", "export-multiplier",
     ["layer fc2 (no folded BatchNorm) has multiplier", "not weight_scale · input_scale"],
     lambda f: replace(f, "layers/fc2/multiplier", f["layers/fc2/multiplier"][()] * np.float32(1.5)))
case("export", "export-weight-scale",
     ["layer conv1 has a weight_scale that is not positive"],
     lambda f: replace(f, "layers/conv1/weight_scale", -f["layers/conv1/weight_scale"][()]))
case("export", "export-sparsity",
     ["/layers/conv2@sparsity = 0.0 is not what the integer weights give"],
     set_attribute("layers/conv2", "sparsity", 0.0))
# An integer attribute stored as a float (HDF5 would convert 2.5 to 2 on an integer read).
case("checkpoint", "ckpt-format-version-float",
     ["missing or non-integer attribute", "/format_version"],
     set_attribute("/", "format_version", 2.5), run="all")
case("export", "export-stride-float",
     ["missing or non-integer attribute", "stride"],
     set_attribute("layers/conv1", "stride", 1.5))
# Grouped convolution (docs/CHECKPOINT.md, "Structure"): the topology's groups (absent: 1) is the
# layer group's `groups` attribute (absent: 1), in 1...65536, dividing the output channels, with
# an input of groups · shape[1] channels.
case("export", "export-topology-groups",
     ["topology entry 5 declares conv2d conv2 with groups 2, but /layers/conv2 has groups 1"],
     topology(lambda items: layer_entry(items, "conv2").__setitem__("groups", 2)))
case("export", "export-groups-attribute",
     ["topology entry 5 declares conv2d conv2 with groups 1, but /layers/conv2 has groups 2"],
     set_attribute("layers/conv2", "groups", 2))
case("export", "export-groups-range",
     ["attribute", "groups = 0 is outside 1...65536"],
     set_attribute("layers/conv2", "groups", 0))


def groups_everywhere(value):
    def change(f):
        f["layers/conv2"].attrs["groups"] = value
        topology(lambda items: layer_entry(items, "conv2").__setitem__("groups", value))(f)
    return change


case("export", "export-groups-indivisible",
     ["layer conv2: groups 3 does not divide its 64 output channels"],
     groups_everywhere(3), run="all")
case("export", "export-groups-input",
     ["layer conv2: input [32, 14, 14] does not fit weights [64, 32, 3, 3] in 2 groups"],
     groups_everywhere(2))

with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)
print("wrote", window, bits, nan, "and", len(cases), "cases in", os.path.join(out, "cases.json"))
