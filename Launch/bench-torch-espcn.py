#!/usr/bin/env python3
"""PyTorch float training of the same ESPCN as a2q's built-in (`a2q model espcn`), on one
core, for the throughput comparison with `a2q bench train --model espcn --quantizer float`
(benchmark only; needs torch: Launch/setup-torch.sh).

    OPENBLAS_NUM_THREADS=1 python3 Launch/bench-torch-espcn.py [--batch 16] [--crop 64] [--steps 200] [--factor 2]

Same model (conv 5x5 3->64, conv 3x3 64->64, conv 3x3 64->32, each with bias and ReLU, conv
3x3 32->3r^2, PixelShuffle(r); with --batchnorm the authors' form, `Launch/models/espcn-bn.json`:
the first three without bias and each followed by BatchNorm), same batch and crop, Adam, mean
squared error, random inputs in [0, 1]. Prints crops/s and high-resolution pixels/s after a
warm-up.
"""
import argparse
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--crop", type=int, default=64, help="high-resolution crop side")
parser.add_argument("--factor", type=int, default=2)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--batchnorm", action="store_true", help="the authors' form with BatchNorm (espcn-bn.json)")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
r = args.factor


def block(cin, cout, k):
    if args.batchnorm:
        return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU()]


model = nn.Sequential(*block(3, 64, 5), *block(64, 64, 3), *block(64, 32, 3),
                      nn.Conv2d(32, 3 * r * r, 3, padding=1), nn.PixelShuffle(r))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.MSELoss()
low = args.crop // r
x = torch.rand(args.batch, 3, low, low)
t = torch.rand(args.batch, 3, args.crop, args.crop)


def step():
    optimizer.zero_grad(set_to_none=False)
    loss = loss_fn(model(x), t)
    loss.backward()
    optimizer.step()


for _ in range(10):
    step()
start = time.perf_counter()
for _ in range(args.steps):
    step()
elapsed = time.perf_counter() - start
crops = args.steps * args.batch / elapsed
print(f"pytorch {torch.__version__} espcn{'-bn' if args.batchnorm else ''} x{r} float: batch {args.batch}, crop {args.crop}, "
      f"{args.threads} thread(s): {crops:.0f} crops/s, {crops * args.crop * args.crop / 1e6:.2f} Mpixels/s "
      f"({1000 * elapsed / args.steps:.1f} ms/step)")
