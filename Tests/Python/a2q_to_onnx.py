"""An a2q float checkpoint as a float ONNX model, written independently of a2q (h5py and
onnx.helper, from the checkpoint's model_description and /model tensors), for the importer's
round-trip test: a2q → ONNX (this script) → `a2q import` must give the same outputs. Tests only.

    python3 a2q_to_onnx.py CHECKPOINT.h5 OUT.onnx [--samples 64] [--seed 0]

writes OUT.onnx (opset 17, input "input" [N, C, H, W], output "output"), OUT.input.f32 (seeded
inputs in [0, 1), float32 little-endian) and OUT.ort.f32 (onnxruntime's outputs for them), and
prints {"input": shape, "ort": shape}. Covers conv, batchnorm, relu, maxpool, avgpool, globalavgpool,
flatten, linear, residual (quant layers are skipped: a float build has none).
"""
import argparse
import json
import sys

import h5py
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper


class Writer:
    def __init__(self, model):
        self.model = model
        self.nodes, self.initializers = [], []

    def tensor(self, full, dataset):
        return np.asarray(self.model[full][dataset], dtype=np.float32)

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attributes):
        self.nodes.append(helper.make_node(op, inputs, [name + "_out"], name=name, **attributes))
        return name + "_out"

    def layers(self, layers, prefix, x):
        for layer in layers:
            x = self.layer(layer, prefix, x)
        return x

    def layer(self, layer, prefix, x):
        kind, full = layer["type"], prefix + layer["name"]
        if kind == "conv":
            k = layer.get("kernel", 1)
            p = layer.get("padding", k // 2)
            s = layer.get("stride", 1)
            inputs = [x, self.constant(full + ".weight", self.tensor(full, "weight"))]
            if layer.get("bias", True):
                inputs.append(self.constant(full + ".bias", self.tensor(full, "bias")))
            return self.node("Conv", inputs, full, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p],
                             dilations=[1, 1], group=layer.get("groups", 1))
        if kind == "linear":
            inputs = [x, self.constant(full + ".weight", self.tensor(full, "weight"))]
            if layer.get("bias", True):
                inputs.append(self.constant(full + ".bias", self.tensor(full, "bias")))
            return self.node("Gemm", inputs, full, transB=1, alpha=1.0, beta=1.0)
        if kind == "batchnorm":
            names = [self.constant(f"{full}.{d}", self.tensor(full, d))
                     for d in ("weight", "bias", "running_mean", "running_var")]
            return self.node("BatchNormalization", [x] + names, full, epsilon=1e-5)
        if kind == "relu":
            return self.node("Relu", [x], full)
        if kind == "maxpool":
            k = layer.get("kernel", 2)
            s = layer.get("stride", k)
            return self.node("MaxPool", [x], full, kernel_shape=[k, k], strides=[s, s])
        if kind == "avgpool":
            # a2q's avgpool counts its padding in the divisor: count_include_pad = 1 (ONNX's default is 0).
            k = layer.get("kernel", 2)
            s = layer.get("stride", k)
            p = layer.get("padding", 0)
            return self.node("AveragePool", [x], full, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p],
                             count_include_pad=1, ceil_mode=0)
        if kind == "globalavgpool":
            pooled = self.node("GlobalAveragePool", [x], full)
            return self.node("Flatten", [pooled], full + ".flatten", axis=1)
        if kind == "flatten":
            return self.node("Flatten", [x], full, axis=1)
        if kind == "quant":
            return x
        if kind == "residual":
            body = self.layers(layer["body"], full + ".", x)
            shortcut = self.layers(layer.get("shortcut") or [], full + ".shortcut.", x)
            added = self.node("Add", [body, shortcut], full + ".add")
            return self.layers(layer.get("after", []), full + ".", added)
        if kind == "sequential":
            return self.layers(layer["layers"], full + ".", x)
        raise SystemExit(f"a2q_to_onnx.py: no ONNX form for layer {full} of type {kind}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with h5py.File(args.checkpoint, "r") as f:
        description = json.loads(f.attrs["model_description"])
        shape = [int(v) for v in f["input_shape"][()]]
        writer = Writer(f["model"])
        output = writer.layers(description["layers"], "", "input")
    writer.nodes.append(helper.make_node("Identity", [output], ["output"], name="output"))
    graph = helper.make_graph(writer.nodes, description["name"],
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch"] + shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", None])],
                              writer.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="a2q_to_onnx.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    inputs = np.random.default_rng(args.seed).random((args.samples, *shape), dtype=np.float32)
    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": inputs})[0].astype("<f4")
    stem = args.out[:-len(".onnx")] if args.out.endswith(".onnx") else args.out
    inputs.astype("<f4").tofile(stem + ".input.f32")
    outputs.tofile(stem + ".ort.f32")
    print(json.dumps({"input": list(inputs.shape), "ort": list(outputs.shape)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
