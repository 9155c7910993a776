"""Writes the three hostile files of issue 14 from a real checkpoint and export (tests only):

    python3 hostile_files.py CHECKPOINT EXPORT OUT_DIR

- OUT_DIR/window.h5: the checkpoint with /data/window declaring 2^40 float64 elements (never
  written, so the file stays small);
- OUT_DIR/bits40.h5: the export with conv2's weight_bits attribute set to 40;
- OUT_DIR/nan-multiplier.h5: the export with one NaN in fc1's multiplier.
"""
import os
import shutil
import sys

import h5py
import numpy as np

checkpoint, export, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)

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
print("wrote", window, bits, nan)
