"""Hostile-file fuzzing of a2q (tests only).

From a real checkpoint and a real export it writes mutated copies with h5py — each dataset and
attribute in turn deleted, retyped, reshaped, given huge declared dimensions (small on disk),
NaN/inf, zero, negative or huge values, strings where numbers belong; layers swapped; files
truncated or with flipped bytes — and runs `inspect`, `verify`, `eval --integer --limit 10`
and `train --resume` on each under a memory limit and a timeout.

Every run must end with exit 0 or 1 (2 for `verify` that proves a model unsafe, its
documented verdict) and, when it fails, a message that starts with "Error:". A signal, a trap,
an abort, a hang or a silent failure is a finding. Prints a JSON summary; exits 1 on findings.

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
    parent, name = path.rsplit("/", 1) if "/" in path else ("/", path)
    del f[path]
    if data is None:
        f[parent].create_dataset(name, **kwargs)
    else:
        f[parent].create_dataset(name, data=data, **kwargs)


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
        "negative": lambda f: replace_dataset(f, path, -np.abs(np.asarray(value)) - 1),
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
    """(label, function(file path)) pairs: a deterministic sample of at most `budget`, always
    including every dataset's huge-declared, NaN and retype mutations and every structural one."""
    datasets, attributes = inventory(path)
    must, rest = [], []
    with h5py.File(path, "r") as f:
        for d in datasets:
            for label, fn in dataset_mutations(f, d).items():
                (must if label in ("huge-declared", "nan", "retype", "string") else rest).append((f"{kind}:{d}:{label}", fn))
        for owner, a in attributes:
            for label, fn in attribute_mutations(f, owner, a).items():
                rest.append((f"{kind}:{owner}@{a}:{label}", fn))
        groups = [g for g in ("layers", "model") if g in f]
    rng = random.Random(seed)
    rng.shuffle(must)
    rng.shuffle(rest)
    # Half the budget from the dataset mutations that crash a careless reader, half from the rest.
    chosen = must[: budget // 2] + rest[: max(0, budget - min(len(must), budget // 2))]
    for g in groups:
        names = sorted(h5py.File(path, "r")[g].keys())
        for i in range(len(names) - 1):
            chosen.append((f"{kind}:swap {g}/{names[i]} {g}/{names[i + 1]}", swap_groups(f"{g}/{names[i]}", f"{g}/{names[i + 1]}")))
    out = [(label, h5py_mutation(fn)) for label, fn in chosen]
    size = os.path.getsize(path)
    for fraction in (0.05, 0.5, 0.9, 0.999):
        out.append((f"{kind}:truncate {fraction}", truncate(int(size * fraction))))
    for s in range(4):
        out.append((f"{kind}:flip bytes seed {s}", flip_bytes(s)))
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


def check(case, command, status, output):
    """None if the outcome is acceptable, else a finding."""
    allowed = {0, 1, 2} if command == "verify" else {0, 1}
    if status not in allowed:
        name = f"signal {signal.Signals(-status).name}" if isinstance(status, int) and status < 0 else str(status)
        return f"{case} / {command}: ended with {name}: {output.strip()[-400:]}"
    if status == 1 and "Error:" not in output:
        return f"{case} / {command}: exit 1 without an error message: {output.strip()[-400:]}"
    return None


def fuzz_one(job):
    index, label, apply, base, kind, args = job
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
        finding = check(label, command, status, output)
        if finding:
            findings.append(finding)
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
        for label, apply in mutations(base, kind, args.files // 2, args.seed):
            jobs.append((len(jobs), label, apply, base, kind, args))

    outcomes, findings, skipped, messages = {}, [], [], {}
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
    files = len(jobs) - len(skipped)
    summary = json.dumps({"files": files, "runs": sum(outcomes.values()), "outcomes": dict(sorted(outcomes.items())),
                          "findings": findings, "skipped": skipped,
                          "common_messages": sorted(messages.items(), key=lambda kv: -kv[1])[:25]}, indent=1)
    print(summary)
    if args.summary:
        with open(args.summary, "w") as out:
            out.write(summary)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
