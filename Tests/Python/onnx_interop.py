"""Runs a2q's QONNX and ONNX exports in the tools users deploy with (tests only) and compares
them with a2q's integer engine.

    python3 onnx_interop.py QONNX ONNX DATA_DIR N OUTPUTS.h5 OUT.json

OUTPUTS.h5: what `a2q eval --integer --outputs OUTPUTS.h5 --outputs-accumulators --limit N`
wrote (docs/CHECKPOINT.md, "Evaluation outputs"): the engine's predictions, class scores and
accumulators for the first N test images.
Writes a JSON report; exits 1 with the reasons when a check fails.
"""
import gzip
import json
import os
import sys

import h5py
import numpy as np
import onnx
import onnxruntime
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.basic import calculate_matvec_accumulator_range

qonnx_path, onnx_path, data, count, outputs_path, out = sys.argv[1:7]
count = int(count)
failures = []
report = {}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_file(name):
    path = os.path.join(data, name + ".gz")
    return read_idx(path if os.path.exists(path) else os.path.join(data, name))


images = test_file("t10k-images-idx3-ubyte")[:count].astype(np.float32)[:, None, :, :]
with h5py.File(outputs_path, "r") as outputs:
    assert outputs.attrs["format"] == "a2q-eval-outputs" and int(outputs.attrs["images"]) == count
    engine = outputs["predictions"][()].astype(np.int64)
    engine_scores = outputs["scores"][()]
    engine_accumulators = {name: outputs["accumulators"][name][()] for name in outputs["accumulators"]}

# 1. Both files pass the ONNX checker.
for path in (qonnx_path, onnx_path):
    onnx.checker.check_model(onnx.load(path), full_check=True)

# Every Conv node's `group` attribute (absent: 1), per file, by its output (grouped and depthwise layers).
report["conv_groups"] = {label: {n.output[0]: next((a.i for a in n.attribute if a.name == "group"), 1)
                                 for n in onnx.load(path).graph.node if n.op_type == "Conv"}
                         for label, path in (("qonnx", qonnx_path), ("onnx", onnx_path))}

# Every AveragePool node's attributes, per file, by its output (window average pools).
report["average_pools"] = {label: {n.output[0]: {a.name: (list(a.ints) if a.ints else [a.i]) for a in n.attribute}
                                   for n in onnx.load(path).graph.node if n.op_type == "AveragePool"}
                           for label, path in (("qonnx", qonnx_path), ("onnx", onnx_path))}

# 2. qonnx reads the QONNX file; its datatypes and metadata say what a2q wrote.
wrapper = ModelWrapper(qonnx_path)
meta = {p.key: p.value for p in wrapper.model.metadata_props}
layers = json.loads(meta["a2q.layers"])
report["layers"] = {}
weight_layers = []
for name in layers:
    layer = json.loads(meta[f"a2q.layer.{name}"])
    if layer["quantizer"] == "avgpool":
        # An average pool (global, or over windows): its integer sum is annotated as the accumulator a2q verified.
        got = str(wrapper.get_tensor_datatype(f"{name}.sum"))
        if got != f"INT{layer['accumulator_bits']}":
            failures.append(f"{name}.sum: qonnx reads datatype {got}, a2q wrote INT{layer['accumulator_bits']}")
        report["layers"][name] = {"a2q_range": [layer["acc_min"], layer["acc_max"]], "overflow_free": layer["overflow_free"]}
        continue
    weight_layers.append(name)
    want = {f"{name}.weight.int": f"INT{layer['weight_bits']}", f"{name}.acc": f"INT{layer['accumulator_bits']}"}
    for tensor, datatype in want.items():
        got = str(wrapper.get_tensor_datatype(tensor))
        if got != datatype:
            failures.append(f"{tensor}: qonnx reads datatype {got}, a2q wrote {datatype}")
    # 3. FINN's accumulator sizing from the exported integer weights and the input datatype
    #    equals a2q's exact range, and fits INT{P}.
    producer = wrapper.find_producer(f"{name}.weight.int")
    weights = wrapper.get_initializer(producer.input[0])
    matrix = weights.reshape(weights.shape[0], -1).T          # (MW, MH) as qonnx expects
    input_tensor = wrapper.find_producer(f"{name}.acc").input[0]
    input_type = wrapper.get_tensor_datatype(input_tensor)
    expected_input = ("INT" if layer["input_signed"] else "UINT") + str(layer["input_bits"])
    if str(input_type) != expected_input:
        failures.append(f"{name}: input datatype {input_type}, a2q says {expected_input}")
    lo, hi = calculate_matvec_accumulator_range(matrix, input_type)
    accumulator = DataType[f"INT{layer['accumulator_bits']}"]
    report["layers"][name] = {"qonnx_range": [int(lo), int(hi)], "a2q_range": [layer["acc_min"], layer["acc_max"]],
                              "fits": bool(accumulator.allowed(lo) and accumulator.allowed(hi)),
                              "overflow_free": layer["overflow_free"]}
    if [int(lo), int(hi)] != [layer["acc_min"], layer["acc_max"]]:
        failures.append(f"{name}: qonnx's accumulator range [{lo}, {hi}] != a2q's [{layer['acc_min']}, {layer['acc_max']}]")
    if layer["overflow_free"] and not (accumulator.allowed(lo) and accumulator.allowed(hi)):
        failures.append(f"{name}: [{lo}, {hi}] does not fit {accumulator} though a2q says overflow-free")

# 4. qonnx's executor runs the QONNX file on N images (the batch is set the way a FINN user
#    does: the declared shapes' first dimension).
for value in list(wrapper.graph.input) + list(wrapper.graph.output) + list(wrapper.graph.value_info):
    dims = value.type.tensor_type.shape.dim
    if len(dims) and dims[0].dim_value == 1 and value.name not in [i.name for i in wrapper.graph.initializer]:
        dims[0].dim_value = count
context = execute_onnx(wrapper, {"image": images}, return_full_exec_context=True)
qonnx_predictions = np.argmax(context["scores"], axis=1)
last = weight_layers[-1]
qonnx_accumulators = context[f"{last}.acc"].astype(np.int64)

# 5. onnxruntime runs the ONNX file (default session options, as users would), and gives the
#    engine's class scores bit for bit. The optimised graph it runs holds no integer kernel
#    (whose u8s8 path on AVX2 without VNNI saturates pairs of products in 16-bit lanes) and keeps
#    every layer's multiplier a separate Mul (not folded into the weights).
options = onnxruntime.SessionOptions()
optimized_path = os.path.join(os.path.dirname(out), "onnxruntime-optimized.onnx")
options.optimized_model_filepath = optimized_path
session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
ort_scores = session.run(["scores"], {"image": images})[0]
ort_predictions = np.argmax(ort_scores, axis=1)
optimized = onnx.load(optimized_path)
integer_ops = sorted({n.op_type for n in optimized.graph.node
                      if n.op_type in ("QGemm", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
                                       "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "MatMulNBits")
                      or (n.op_type == "QuantizeLinear")})
report["onnxruntime_integer_ops"] = integer_ops
if integer_ops:
    failures.append(f"onnxruntime's optimised graph runs integer kernels: {integer_ops}")
multipliers = {n.input[1] for n in optimized.graph.node if n.op_type == "Mul" and len(n.input) > 1}
folded = [name for name in weight_layers if f"{name}.multiplier" not in multipliers]
report["onnxruntime_folded_multipliers"] = folded
if folded:
    failures.append(f"onnxruntime folded the multipliers of {folded} into other ops (not the engine's two roundings)")
onnx_meta = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
report["float32_exact"] = onnx_meta.get("a2q.float32_exact")
assert engine_scores.dtype == np.float32 and engine_scores.shape == ort_scores.shape
different = np.nonzero(np.any(ort_scores.view(np.uint32) != engine_scores.view(np.uint32), axis=1))[0]
report["onnxruntime_scores_differing"] = [int(i) for i in different]
if onnx_meta.get("a2q.float32_exact") == "1" and len(different):
    failures.append(f"onnxruntime's scores differ from the engine's on {len(different)} of {count} images "
                    f"(first: {different[:5].tolist()}) though every sum is float32-exact")

for label, predictions in (("qonnx", qonnx_predictions), ("onnxruntime", ort_predictions)):
    agree = float((predictions == engine).mean())
    report[f"{label}_agreement"] = agree
    report[f"{label}_differing"] = [int(i) for i in np.nonzero(predictions != engine)[0]]
    if agree < 0.999:
        failures.append(f"{label}: predictions agree with a2q's engine on {agree:.4%} of {count} images")
report["qonnx_accumulators_equal"] = bool(np.array_equal(qonnx_accumulators.reshape(-1), engine_accumulators[last].reshape(-1)))
if not report["qonnx_accumulators_equal"]:
    failures.append(f"qonnx's {last}.acc differs from the engine's accumulators")
# Every pool's integer sums (global: ReduceSum; windows: AveragePool times kernel², rounded) equal the
# engine's pool registers: in qonnx's executor (which itself rounds every tensor annotated with an integer
# datatype, so it would hide a sum that is not an integer) and in onnxruntime on the ONNX file with the
# sums as extra graph outputs (which hides nothing: the values must be the exact integers).
pools = [name for name in layers if json.loads(meta[f"a2q.layer.{name}"])["quantizer"] == "avgpool"]
report["qonnx_pool_sums_equal"] = {name: bool(np.array_equal(context[f"{name}.sum"].astype(np.int64), engine_accumulators[name]))
                                   for name in pools}
for name, equal in report["qonnx_pool_sums_equal"].items():
    if not equal:
        failures.append(f"qonnx's {name}.sum differs from the engine's pool sums")
if pools:
    with_sums = onnx.load(onnx_path)
    for name in pools:
        with_sums.graph.output.append(onnx.helper.make_tensor_value_info(f"{name}.sum", onnx.TensorProto.FLOAT, None))
    sums_session = onnxruntime.InferenceSession(with_sums.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_sums = sums_session.run([f"{name}.sum" for name in pools], {"image": images})
    report["onnxruntime_pool_sums_equal"] = {name: bool(np.array_equal(values, engine_accumulators[name].astype(np.float32)))
                                             for name, values in zip(pools, ort_sums)}
    for name, values in zip(pools, ort_sums):
        if not report["onnxruntime_pool_sums_equal"][name]:
            off = int(np.sum(values != engine_accumulators[name].astype(np.float32)))
            failures.append(f"onnxruntime's {name}.sum differs from the engine's pool sums in {off} of {values.size} values")
report["images"] = count
report["failures"] = failures
with open(out, "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps({k: v for k, v in report.items() if k != "layers"}))
sys.exit(1 if failures else 0)
