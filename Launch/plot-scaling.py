#!/usr/bin/env python3
"""The plot of docs/SCALING.md: projected scaling efficiency against rank count, read from the
projection tables in that file (cnn: recursive doubling per link with an emulated delay;
resnet20: each link of its table), written
as a self-contained SVG (no plotting library needed).

    Launch/plot-scaling.py [docs/SCALING.md] [docs/scaling.svg]
"""
import math
import re
import sys

source = sys.argv[1] if len(sys.argv) > 1 else "docs/SCALING.md"
target = sys.argv[2] if len(sys.argv) > 2 else "docs/scaling.svg"

series = {}  # label -> [(ranks, efficiency %)]
link, table, resnet_links = None, None, []
for line in open(source, encoding="utf-8"):
    heading = re.match(r"### Link (\S+):", line)
    if heading:
        link = heading.group(1)
    if line.startswith("Projection, cnn"):
        table = "cnn"
    elif line.startswith("Projection, resnet20"):
        table = "resnet20"
    elif line.startswith("#"):
        table = None
    if table == "resnet20" and line.startswith("| ranks"):
        # "| ranks | 1gbit+0.5ms: all-reduce ms (doubling) | images/s | efficiency | ..."
        resnet_links = [cell.split(":")[0].strip() for cell in line.split("|") if ": all-reduce" in cell]
    row = re.match(r"\|\s*(\d+)\s*\|(.*)\|\s*$", line)
    if not row or table is None:
        continue
    ranks = int(row.group(1))
    cells = [c.strip() for c in row.group(2).split("|")]
    if table == "cnn":
        if "+" in (link or ""):  # the links with an emulated delay (the fits the text uses)
            series.setdefault(f"cnn, {link}", []).append((ranks, float(cells[2].rstrip("%"))))
    else:
        for index, name in enumerate(resnet_links):
            series.setdefault(f"resnet20, {name}", []).append((ranks, float(cells[3 * index + 2].rstrip("%"))))

if not series:
    sys.exit(f"plot-scaling: no projection tables found in {source}")

width, height, left, right, top, bottom = 760, 420, 60, 230, 30, 50
plot_w, plot_h = width - left - right, height - top - bottom
max_ranks = max(r for points in series.values() for r, _ in points)
def x(r): return left + plot_w * math.log2(r) / math.log2(max_ranks)
def y(e): return top + plot_h * (1 - e / 100)

def colour(name): return "#1f77b4" if name.startswith("10gbit") else "#d62728" if name.startswith("1gbit") else "#2ca02c"
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="18" font-size="14">Projected scaling efficiency (docs/SCALING.md; fitted on test hosts with emulated delay)</text>']
for e in range(0, 101, 20):
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(e):.1f}" y2="{y(e):.1f}" stroke="#ddd"/>')
    parts.append(f'<text x="{left - 8}" y="{y(e) + 4:.1f}" text-anchor="end">{e}%</text>')
r = 1
while r <= max_ranks:
    parts.append(f'<line x1="{x(r):.1f}" x2="{x(r):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
    parts.append(f'<text x="{x(r):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{r}</text>')
    r *= 2
parts.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">ranks (one per host, batch 64 per rank)</text>')
for i, (label, points) in enumerate(sorted(series.items())):
    model, name = label.split(", ")
    dash = "" if model == "resnet20" else ' stroke-dasharray="6 4"'
    path = " ".join(f"{'M' if k == 0 else 'L'}{x(r):.1f},{y(e):.1f}" for k, (r, e) in enumerate(sorted(points)))
    parts.append(f'<path d="{path}" fill="none" stroke="{colour(name)}" stroke-width="2"{dash}/>')
    ly = top + 14 + 18 * i
    parts.append(f'<line x1="{left + plot_w + 15}" x2="{left + plot_w + 45}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour(name)}" stroke-width="2"{dash}/>')
    parts.append(f'<text x="{left + plot_w + 50}" y="{ly}">{label}</text>')
parts.append("</svg>")
open(target, "w", encoding="utf-8").write("\n".join(parts) + "\n")
print(f"plot-scaling: {len(series)} series → {target}")
