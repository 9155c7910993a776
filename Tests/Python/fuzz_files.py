"""Hostile-file fuzzing of a2q (tests only).

From a real checkpoint and a real export it writes mutated copies with h5py — each dataset and
attribute in turn deleted, retyped, reshaped, given huge declared dimensions (small on disk),
NaN/inf, zero, negative or huge values, strings where numbers belong; layers swapped; files
truncated or with flipped bytes — and runs `inspect`, `verify`, `eval --integer --limit 10`
and `train --resume` on each under a memory limit and a timeout.

Every mutation carries the verdict docs/CHECKPOINT.md ("Reading: every file is untrusted")
gives it, per command:

- "refuse": exit 1 with a message that starts with "Error:" (a value, type, shape or
  cross-check the reading rules refuse, in a part of the file that command reads);
- "accept": exit 0 (`verify` also 2, its verdict on a model it proves unsafe): a value the rules
  allow, or a part of the file that command does not read ("What reads what": `inspect`,
  `verify` and `eval` read a checkpoint's header and /model with its integer views, `--resume`
  also /optimizer and /data/rank_buffers; informational attributes are never read);
- "any": the rules do not decide (e.g. a finite but huge parameter whose consequences are the
  model's, a flipped byte that may land in unused space); exit 0 or 1 with a message.

In every case a signal, a trap, an abort, a hang, exit 1 without a message, or a verdict other
than the expected one is a finding. Prints a JSON summary (with every case's statuses and
expected verdicts); exits 1 on findings.

    python3 fuzz_files.py --a2q BIN --checkpoint CKPT --export EXPORT --work DIR
                          --train-args "ARGS" [--files N] [--jobs J]
"""
import argparse
import concurrent.futures
import json
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np

MEMORY_LIMIT = 3 << 30  # address space per run
TIMEOUT = 60
COMMANDS = ("inspect", "verify", "eval", "train")


# ---------------------------------------------------------------------------------------------
# Expected verdicts (docs/CHECKPOINT.md, "Reading: every file is untrusted")

REFUSE, ACCEPT, ANY = "refuse", "accept", "any"


def everywhere(verdict, rule):
    return {c: verdict for c in COMMANDS}, rule


def resume_only(verdict, rule):
    """A part of a checkpoint that only --resume reads: the others accept any change to it."""
    return {"inspect": ACCEPT, "verify": ACCEPT, "eval": ACCEPT, "train": verdict}, rule


def for_export(verdicts_rule):
    """Exports: every command but train reads them whole; train --resume refuses any export."""
    verdicts, rule = verdicts_rule
    return dict(verdicts, train=REFUSE), rule


STRUCTURAL = {"delete", "retype", "reshape", "flatten-drop", "huge-declared", "string", "empty"}
# Export layers with a BatchNorm folded in (multiplier and offset are then free floats) and the one
# without (fc2: multiplier = float32(weight_scale · input_scale), offset = bias, bit for bit).
FOLDED = {"conv1", "conv2", "fc1"}


def dataset_verdict(kind, path, label, quantized):
    """What the rules say about mutation `label` of dataset `path` in a `kind` file
    (`quantized`: the groups that hold an integer view)."""
    parts = path.split("/")
    name = parts[-1]
    if label in STRUCTURAL:
        rule = "Datasets: stored type, rank and dimensions, declared bytes"
        if kind == "export":
            return for_export(everywhere(REFUSE, rule))
        if parts[0] in ("optimizer",) or path.startswith("data/rank_buffers"):
            return resume_only(REFUSE, rule + " (read by --resume only)")
        return everywhere(REFUSE, rule)
    if label in ("nan", "inf"):
        rule = "Values: finite"
        if kind == "export":
            return for_export(everywhere(REFUSE, rule))
        if parts[0] == "optimizer" or path.startswith("data/rank_buffers"):
            return resume_only(REFUSE, rule + " (read by --resume only)")
        return everywhere(REFUSE, rule)
    # Finite values of the right type and shape: zero, negative (−|v|−1), huge, min.
    if kind == "export":
        if name == "input_shape":
            return for_export(everywhere(REFUSE, "input_shape: each size 1…4096"))
        layer = parts[1]
        if name in ("weight_int", "l1_norm", "acc_min", "acc_max", "p_min"):
            return for_export(everywhere(REFUSE, "export: weight_int fits M bits; its derived datasets exactly what it gives"))
        if name == "weight_scale" and label in ("zero", "negative"):
            return for_export(everywhere(REFUSE, "export: weight_scale positive"))
        if layer not in FOLDED:
            return for_export(everywhere(REFUSE, "export without folded BatchNorm: multiplier = weight_scale·input_scale, offset = bias"))
        return for_export(everywhere(ACCEPT, "export, folded layer: a finite (positive) float the rules allow"))
    if name == "input_shape":
        return everywhere(REFUSE, "input_shape: each size 1…4096")
    if parts[0] == "model":
        if name in ("weight_int", "weight_scale", "l1_norm", "acc_min", "acc_max", "p_min"):
            return everywhere(REFUSE, "integer view: must equal the view recomputed from the parameters")
        if parts[1] in quantized and name in ("weight", "weight_log2_scale", "weight_log2_norm") or name == "log2_scale":
            return everywhere(REFUSE, "integer view: this parameter changes the stored view (or its input_scale)")
        if name == "running_var" and label in ("negative", "min"):
            return everywhere(REFUSE, "Values: running_var non-negative")
        if label == "huge":
            return everywhere(ANY, "a finite huge parameter: its consequences are the model's")
        return everywhere(ACCEPT, "a finite parameter outside the integer views")
    if parts[0] == "optimizer":
        if name and parts[1] == "exp_avg_sq" and label in ("negative", "min"):
            return resume_only(REFUSE, "Values: Adam's exp_avg_sq non-negative (read by --resume only)")
        return resume_only(ANY if label == "huge" else ACCEPT, "finite optimizer state (read by --resume only)")
    if path.startswith("data/rank_buffers"):
        if name.endswith("running_var") and label in ("negative", "min"):
            return resume_only(REFUSE, "Values: running_var non-negative in /data/rank_buffers (read by --resume only)")
        return resume_only(ANY if label == "huge" else ACCEPT, "finite rank buffers (read by --resume only)")
    if parts[0] == "data":  # window, epoch_totals: finite logging sums, read with the header
        return dict(everywhere(ACCEPT, "")[0], train=ANY if label == "huge" else ACCEPT), "Values: finite logging sums"
    return everywhere(ANY, "no rule")


# Checkpoint attributes, by where they are.
NOT_READ_ROOT = {"created", "software_version"}
COUNTERS = {"step", "earlier_steps", "epoch", "position", "global_step"}
ENUM_CONFIG_KEYS = {"quantizer", "first-last", "init", "schedule", "optimizer", "allreduce-order", "allreduce-progress", "model"}
CROSS_CHECKED_CONFIG_KEYS = {"seed", "batch-size", "model", "optimizer"}
# Number options whose negative values the command line accepts (`--warmup-steps -5` trains with
# no warm-up, `--calibration-batches -5` calibrates on none): a stored one is not refused either.
NEGATIVE_ACCEPTED_CONFIG_KEYS = {"warmup-steps", "calibration-batches"}


def attribute_verdict(kind, owner, name, label, original):
    """What the rules say about mutation `label` of attribute `name` of `owner` (value `original`)."""
    text = original.decode() if isinstance(original, bytes) else original
    numeric = isinstance(original, (int, float, np.integer, np.floating))
    unchanged = {"zero": 0, "negative": -1, "huge": 1 << 40, "huge-negative": -(1 << 62), "fraction": 2.5}
    if numeric and label in unchanged and original == unchanged[label] or label == "truncated" and text == "":
        verdicts = everywhere(ACCEPT, "unchanged value")
        return for_export(verdicts) if kind == "export" else verdicts
    if kind == "export":
        if owner == "/" and name in ("software_version", "source", "config", "bias_placement", "requantisation"):
            return for_export(everywhere(ACCEPT, "Not read: informational export attributes"))
        if owner == "/" and name == "model" and label in ("empty", "garbage", "truncated"):
            return for_export(everywhere(ANY, "export model name: a string, otherwise unchecked"))
        if owner == "/" and name == "topology" and label.startswith("json-"):
            return for_export(topology_verdict(label, original))
        if owner.startswith("layers/"):
            layer = owner.split("/")[1]
            if name == "folded_batchnorm" and label == "empty":
                return for_export(everywhere(ACCEPT if text == "" else REFUSE,
                                             "folded_batchnorm empty: multiplier = weight_scale·input_scale, offset = bias"))
            if name == "folded_batchnorm" and label in ("garbage", "truncated"):
                return for_export(everywhere(ACCEPT, "folded_batchnorm: a BatchNorm's name (non-empty: folded, no equality to check)"))
            if name == "l1_bound" and label in ("negative", "huge"):
                return for_export(everywhere(ACCEPT, "l1_bound −1 (unconstrained) or positive, at least every channel's Σ|q|"))
        return for_export(everywhere(REFUSE, "export attributes: range-checked, or exactly what the layer and topology give"))
    # Checkpoints.
    if owner == "/" and name in NOT_READ_ROOT or owner == "rng" and name == "note":
        return everywhere(ACCEPT, "Not read: software_version, created, /rng@note")
    if owner == "/" and name in ("float_test_accuracy", "conversion_test_accuracy"):
        if label in ("zero", "delete"):
            return everywhere(ACCEPT, "accuracies: in 0…1, when known")
        return everywhere(REFUSE, "accuracies: in 0…1")
    if owner == "/" and name == "config" and label.startswith("json-"):
        return config_verdict(label, original)
    if owner == "/" and name == "model_description" and label.startswith("json-"):
        key = label.split("-")[1]
        if key == "name" and label.endswith(("-string", "-null")):
            return everywhere(ANY, "the model file's name")
        return everywhere(REFUSE, "model_description: the model's tree as a model file")
    if owner == "optimizer":
        if name == "step_count" and label in ("zero", "huge"):
            return resume_only(ACCEPT, "step_count: 0…2^40 (read by --resume only)")
        return resume_only(REFUSE, "/optimizer@kind the configuration's optimizer; step_count 0…2^40 (read by --resume only)")
    if owner.startswith("model/"):
        return everywhere(REFUSE, "integer view attributes: must equal the recomputed view")
    return everywhere(REFUSE, "header: range-checked and cross-checked attributes")


def config_verdict(label, original):
    """A changed key of the stored configuration (`json-KEY-LABEL`), decoded and validated like a command line."""
    key, change = label[len("json-"):].rsplit("-", 1)
    value = json.loads(original.decode() if isinstance(original, bytes) else original).get(key)
    rule = "config: decoded and validated like a command line"
    if change == "null":
        return everywhere(ANY, rule + " (null: the option's default)")
    if key in CROSS_CHECKED_CONFIG_KEYS:
        return everywhere(REFUSE, rule + "; model, seed, batch size and optimizer cross-checked")
    if isinstance(value, bool) or isinstance(value, (int, float)):
        if change == "string" or change == "negative" and key not in NEGATIVE_ACCEPTED_CONFIG_KEYS:
            return everywhere(REFUSE, rule + " (a number option: no string, no negative value)")
        return everywhere(ANY, rule)
    if isinstance(value, str):
        if change in ("negative", "huge") or key in ENUM_CONFIG_KEYS:
            return everywhere(REFUSE, rule + " (a text option: no number; enumerations: known names)")
        return everywhere(ANY, rule)
    if isinstance(value, dict):
        return everywhere(REFUSE, rule + " (a NAME=P map)")
    return everywhere(ANY, rule)


def topology_verdict(label, original):
    """A changed export topology (`json-I-KEY-LABEL`, `json-drop-I`, `json-shuffled`, `json-unknown-op`)."""
    topology = json.loads(original.decode() if isinstance(original, bytes) else original)
    rule = "Structure: known ops, fields of the right type, shapes, strides, formats and scales that match the layers and chain"
    if label.startswith("json-drop-"):
        op = topology[int(label.rsplit("-", 1)[1])]["op"]
        if op == "relu":
            return everywhere(ACCEPT, "a topology without one relu is still a valid chain")
        if op == "flatten":
            return everywhere(ANY, "flatten dropped: whether a linear op takes [C, H, W] as flat is not specified")
        return everywhere(REFUSE, rule)
    if label in ("json-shuffled", "json-unknown-op"):
        return everywhere(REFUSE, rule)
    _, index, rest = label.split("-", 2)
    key, change = rest.rsplit("-", 1)
    item = topology[int(index)]
    if item["op"] == "quantize" and key == "name" and change == "string":
        return everywhere(ANY, "a quantize op's name is not tied to anything")
    return everywhere(REFUSE, rule)


# ---------------------------------------------------------------------------------------------
# The file's contents

def inventory(path):
    """Datasets (paths) and attributes ((object path, name)) of an HDF5 file, in a fixed order."""
    datasets, attributes = [], []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets.append(name)
            for a in obj.attrs:
                attributes.append((name, a))
        for a in f.attrs:
            attributes.append(("/", a))
        f.visititems(visit)
    return sorted(datasets), sorted(attributes)


def replace_dataset(f, path, data=None, **kwargs):
    """Replaces dataset `path` as a2q writes datasets (chunked, Fletcher32) where h5py can: a
    mutation changes the one property it names, not the storage layout."""
    parent, name = path.rsplit("/", 1) if "/" in path else ("/", path)
    del f[path]
    if data is None:
        f[parent].create_dataset(name, **kwargs)
        return
    array = np.asarray(data)
    if array.ndim > 0 and array.size > 0 and array.dtype.kind in "iuf":
        f[parent].create_dataset(name, data=array, chunks=array.shape, fletcher32=True)
    else:
        f[parent].create_dataset(name, data=data)


def dataset_mutations(f, path):
    """name → function(f) for one dataset."""
    d = f[path]
    value, dtype, shape = d[()], d.dtype, d.shape
    is_float = dtype.kind == "f"
    huge_shape = (1 << 40,) if len(shape) <= 1 else (1 << 20,) + tuple(1 << 10 for _ in shape[1:])
    fill = lambda v: (lambda f: replace_dataset(f, path, np.full(shape, v, dtype=dtype)))
    m = {
        "delete": lambda f: f.__delitem__(path),
        "retype": lambda f: replace_dataset(f, path, np.asarray(value).astype(np.int32 if is_float else np.float64)),
        "reshape": lambda f: replace_dataset(f, path, np.asarray(value).reshape((1,) + shape + (1,))),
        "flatten-drop": lambda f: replace_dataset(f, path, np.asarray(value).reshape(-1)[:-1]),
        "huge-declared": lambda f: replace_dataset(f, path, None, shape=huge_shape, dtype=dtype, chunks=True),
        "zero": fill(0),
        "negative": lambda f: replace_dataset(f, path, (-np.abs(np.asarray(value)) - 1).astype(dtype)),
        "string": lambda f: replace_dataset(f, path, "not a number"),
        "empty": lambda f: replace_dataset(f, path, np.zeros((0,), dtype=dtype)),
    }
    if is_float:
        m["nan"] = fill(np.nan)
        m["inf"] = fill(np.inf)
        m["huge"] = fill(np.float32(3e38) if dtype == np.float32 else 1e300)
    else:
        m["huge"] = fill(np.iinfo(dtype).max)
        m["min"] = fill(np.iinfo(dtype).min)
    return m


def attribute_mutations(f, owner, name):
    """name → function(f) for one attribute."""
    obj = f[owner]
    value = obj.attrs[name]
    numeric = isinstance(value, (int, float, np.integer, np.floating))

    def setter(v):
        return lambda f: f[owner].attrs.__setitem__(name, v)
    m = {"delete": lambda f: f[owner].attrs.__delitem__(name), "array": setter(np.array([1, 2, 3]))}
    if numeric:
        m.update({"string": setter("seven"), "nan": setter(np.nan), "inf": setter(-np.inf), "zero": setter(0),
                  "negative": setter(-1), "huge": setter(1 << 40), "huge-negative": setter(-(1 << 62)),
                  "fraction": setter(2.5)})
    else:
        text = value.decode() if isinstance(value, bytes) else str(value)
        m.update({"number": setter(7), "empty": setter(""), "garbage": setter("{[not json"),
                  "truncated": setter(text[: len(text) // 2])})
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):  # the stored configuration: wrong types and unknown values
            for key in list(parsed)[:40]:
                for label, bad in (("string", "x"), ("negative", -5), ("huge", 1 << 40), ("null", None)):
                    changed = dict(parsed)
                    changed[key] = bad
                    m[f"json-{key}-{label}"] = setter(json.dumps(changed))
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):  # the topology
            rng = random.Random(7)
            for i, item in enumerate(parsed):
                for key in item:
                    for label, bad in (("string", "x"), ("zero", 0), ("negative", -3), ("huge", 1 << 40), ("null", None)):
                        changed = [dict(x) for x in parsed]
                        changed[i][key] = bad
                        m[f"json-{i}-{key}-{label}"] = setter(json.dumps(changed))
                dropped = parsed[:i] + parsed[i + 1:]
                m[f"json-drop-{i}"] = setter(json.dumps(dropped))
            shuffled = list(parsed)
            rng.shuffle(shuffled)
            m["json-shuffled"] = setter(json.dumps(shuffled))
            m["json-unknown-op"] = setter(json.dumps(parsed + [{"op": "softmax"}]))
    return m


def swap_groups(a, b):
    def swap(f):
        f.move(a, a + "__tmp")
        f.move(b, a)
        f.move(a + "__tmp", b)
    return swap


def mutations(path, kind, budget, seed):
    """(label, function(file path), verdicts, rule) tuples: a deterministic sample of at most
    `budget`, always including every dataset's huge-declared, NaN and retype mutations and every
    structural one."""
    datasets, attributes = inventory(path)
    must, rest = [], []
    quantized = {d.split("/")[-2] for d in datasets if d.endswith("/weight_int")}
    with h5py.File(path, "r") as f:
        for d in datasets:
            for label, fn in dataset_mutations(f, d).items():
                verdicts, rule = dataset_verdict(kind, d, label, quantized)
                (must if label in ("huge-declared", "nan", "retype", "string") else rest).append(
                    (f"{kind}:{d}:{label}", fn, verdicts, rule))
        for owner, a in attributes:
            original = f[owner].attrs[a]
            for label, fn in attribute_mutations(f, owner, a).items():
                verdicts, rule = attribute_verdict(kind, owner, a, label, original)
                rest.append((f"{kind}:{owner}@{a}:{label}", fn, verdicts, rule))
        groups = [g for g in ("layers", "model") if g in f]
    rng = random.Random(seed)
    rng.shuffle(must)
    rng.shuffle(rest)
    # Half the budget from the dataset mutations that crash a careless reader, half from the rest.
    chosen = must[: budget // 2] + rest[: max(0, budget - min(len(must), budget // 2))]
    swap_rule = "Structure: each layer's tensors have its shapes (checkpoints) / the topology's (exports)"
    for g in groups:
        names = sorted(h5py.File(path, "r")[g].keys())
        for i in range(len(names) - 1):
            verdicts, rule = (for_export(everywhere(REFUSE, swap_rule)) if kind == "export" else everywhere(REFUSE, swap_rule))
            chosen.append((f"{kind}:swap {g}/{names[i]} {g}/{names[i + 1]}", swap_groups(f"{g}/{names[i]}", f"{g}/{names[i + 1]}"),
                           verdicts, rule))
    # The file itself, unchanged: a control that every command accepts (train --resume: a checkpoint).
    control = everywhere(ACCEPT, "the unchanged file")
    chosen.insert(0, (f"{kind}:unchanged", lambda f: None, *(for_export(control) if kind == "export" else control)))
    out = [(label, h5py_mutation(fn), verdicts, rule) for label, fn, verdicts, rule in chosen]
    size = os.path.getsize(path)
    truncated = everywhere(REFUSE, "a truncated file cannot be opened")
    for fraction in (0.05, 0.5, 0.9, 0.999):
        verdicts, rule = for_export(truncated) if kind == "export" else truncated
        out.append((f"{kind}:truncate {fraction}", truncate(int(size * fraction)), verdicts, rule))
    flipped = everywhere(ANY, "flipped bytes: refused where a checksum or a check sees them; unused bytes change nothing")
    for s in range(4):
        verdicts, rule = for_export(flipped) if kind == "export" else flipped
        out.append((f"{kind}:flip bytes seed {s}", flip_bytes(s), verdicts, rule))
    return out


def h5py_mutation(fn):
    def apply(target):
        with h5py.File(target, "r+") as f:
            fn(f)
    return apply


def truncate(length):
    def apply(target):
        with open(target, "r+b") as f:
            f.truncate(length)
    return apply


def flip_bytes(seed):
    def apply(target):
        rng = random.Random(seed)
        data = bytearray(open(target, "rb").read())
        for _ in range(16):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        open(target, "wb").write(bytes(data))
    return apply


# ---------------------------------------------------------------------------------------------
# Running a2q on a file

def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(binary, arguments, cwd):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", SWIFT_BACKTRACE="enable=no")
    try:
        p = subprocess.run([binary] + arguments, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                           preexec_fn=limit_memory, env=env)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stdout or "") if isinstance(e.stdout, str) else ""


def check(case, command, status, output, expected, rule):
    """None if the outcome is the expected verdict, else a finding."""
    allowed = {0, 1, 2} if command == "verify" else {0, 1}
    if status not in allowed:
        name = f"signal {signal.Signals(-status).name}" if isinstance(status, int) and status < 0 else str(status)
        return f"{case} / {command}: ended with {name}: {output.strip()[-400:]}"
    if status == 1 and "Error:" not in output:
        return f"{case} / {command}: exit 1 without an error message: {output.strip()[-400:]}"
    if expected == REFUSE and status != 1:
        return f"{case} / {command}: exit {status}, but the file must be refused ({rule}): {output.strip()[-300:]}"
    if expected == ACCEPT and status == 1:
        return f"{case} / {command}: refused, but the rules accept it ({rule}): {output.strip()[-300:]}"
    return None


def fuzz_one(job):
    index, label, apply, verdicts, rule, base, kind, args = job
    folder = os.path.join(args.work, f"case-{index:04d}")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, os.path.basename(base))
    shutil.copy(base, target)
    try:
        apply(target)
    except Exception as e:  # a mutation h5py cannot make (e.g. a type it refuses): skipped, reported
        shutil.rmtree(folder, ignore_errors=True)
        return label, None, [], f"not applicable: {type(e).__name__}: {e}"
    commands = {
        "inspect": ["inspect", target],
        "verify": ["verify", target],
        "eval": ["eval", "--integer", target, "--limit", "10"] + (["--data", args.data] if args.data else []),
        "train": ["train"] + shlex.split(args.train_args) + ["--out", os.path.join(folder, "run"), "--resume", target],
    }
    statuses, findings, messages = {}, [], []
    for command, arguments in commands.items():
        status, output = run(args.a2q, arguments, folder)
        statuses[command] = status
        finding = check(label, command, status, output, verdicts[command], rule)
        if finding:
            findings.append(finding.replace(folder + "/", ""))
        messages += [line.replace(folder + "/", "") for line in output.splitlines() if line.startswith("Error:")][:1]
    shutil.rmtree(folder, ignore_errors=True)
    return label, statuses, findings, messages


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a2q", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--export", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--train-args", required=True, help="the flags of the run that wrote the checkpoint")
    parser.add_argument("--data", default=None, help="--data for eval")
    parser.add_argument("--files", type=int, default=320, help="mutated files in all (about half per base file)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--summary", help="also write the JSON summary here")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)

    jobs = []
    for kind, base in (("export", args.export), ("checkpoint", args.checkpoint)):
        for label, apply, verdicts, rule in mutations(base, kind, args.files // 2, args.seed):
            jobs.append((len(jobs), label, apply, verdicts, rule, base, kind, args))
    expected = {label: verdicts for _, label, _, verdicts, _, _, _, _ in jobs}

    outcomes, findings, skipped, messages, cases = {}, [], [], {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for label, statuses, found, note in pool.map(fuzz_one, jobs):
            if statuses is None:
                skipped.append(f"{label}: {note}")
                continue
            for message in note:
                messages[message] = messages.get(message, 0) + 1
            for command, status in statuses.items():
                key = f"{command} exit {status}"
                outcomes[key] = outcomes.get(key, 0) + 1
            findings.extend(found)
            cases.append({"case": label, "expected": expected[label], "statuses": statuses})
    files = len(jobs) - len(skipped)
    verdicts = {}
    for case in cases:
        for command, verdict in case["expected"].items():
            key = f"{command} {verdict}"
            verdicts[key] = verdicts.get(key, 0) + 1
    summary = json.dumps({"files": files, "runs": sum(outcomes.values()), "outcomes": dict(sorted(outcomes.items())),
                          "expected": dict(sorted(verdicts.items())), "findings": findings, "skipped": skipped,
                          "common_messages": sorted(messages.items(), key=lambda kv: -kv[1])[:25], "cases": cases}, indent=1)
    print(summary)
    if args.summary:
        with open(args.summary, "w") as out:
            out.write(summary)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
