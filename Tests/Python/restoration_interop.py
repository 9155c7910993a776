"""Runs a restoration model's QONNX and ONNX exports on one image in the tools users deploy
with (tests only) and compares their output pixels with a2q's integer engine.

    python3 restoration_interop.py QONNX ONNX INPUT.png ENGINE.png

INPUT.png: a low-resolution image of exactly the exported model's input size; ENGINE.png:
what `a2q upscale` wrote for it. Both runtimes must give the engine's pixels exactly (the
graph's output is the output quantizer's integers as float32). Exits 1 with the reasons.
"""
import sys

import numpy as np
import onnx
import onnxruntime
from PIL import Image
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

qonnx_path, onnx_path, input_path, engine_path = sys.argv[1:5]
failures = []
image = np.asarray(Image.open(input_path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None]  # [1, 3, H, W] pixels
engine = np.asarray(Image.open(engine_path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None]

for path in (qonnx_path, onnx_path):
    onnx.checker.check_model(onnx.load(path), full_check=True)

session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
ort = session.run(["pixels"], {"image": image})[0]
if ort.shape != engine.shape:
    failures.append(f"onnxruntime's output {ort.shape} != the engine's {engine.shape}")
elif not np.array_equal(ort, engine):
    failures.append(f"onnxruntime differs from the engine on {int((ort != engine).sum())} of {ort.size} pixels")

wrapper = ModelWrapper(qonnx_path)
qonnx_out = execute_onnx(wrapper, {"image": image})["pixels"]
if qonnx_out.shape != engine.shape or not np.array_equal(qonnx_out, engine):
    failures.append("qonnx's executor differs from the engine")

if failures:
    raise SystemExit("; ".join(failures))
print(f"onnxruntime and qonnx equal the engine on all {engine.size} output pixels")
