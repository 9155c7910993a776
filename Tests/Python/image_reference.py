#!/usr/bin/env python3
"""Independent references for a2q's image code (Tests/A2QTests/Image*Tests.swift): Pillow and
NumPy, never a2q's own code. Tests only: the product never runs Python.

  codecs DIR      writes PNG files with a PNG writer of its own (zlib + struct: every colour
                  type, bit depths 1-16, palettes with tRNS, Adam7 interlacing), JPEG files with
                  Pillow (4:2:0, 4:2:2, 4:4:4, progressive, grayscale, CMYK), broken files
                  (truncated, a corrupt CRC, a header declaring 100000 x 100000 pixels, a text
                  file named .png, an empty file) and DIR/manifest.json. For every good file the
                  manifest names raw RGB references (height x width x 3, interleaved): "numpy",
                  computed from the samples written (PNG), and "pillow", Pillow's decoding
                  (Image.open(...).convert("RGB")), where Pillow's conversion is the one a2q
                  documents (not for 16-bit PNGs: Pillow keeps the high byte of RGB and clips gray
                  where a2q rounds v * 255 / 65535).
  resize DIR      source images (uniform noise and a smooth picture with texture; wide, tall
                  and square), Pillow's Image.resize(..., Image.BICUBIC) of each to several sizes
                  (down and up by one factor on both axes, and by two different factors): rows
                  then columns as two one-axis resizes, and Pillow's direct resize; raw RGB
                  outputs and DIR/manifest.json.
  decode FILE OUT Pillow's decoding of FILE as raw RGB (height x width x 3) into OUT.
  psnr OUT TGT N  OUT and TGT: float32 files of N images each (unit scale); prints a JSON object
                  with each image's PSNR computed with NumPy (round(clip(x * 255, 0, 255)), half
                  up; 10 log10(255^2 / MSE) per image, capped at 100 dB) and their mean.
"""
import json
import os
import struct
import sys
import zlib

import warnings

import numpy as np
from PIL import Image

# Pillow suggests RGBA for palette images with tRNS; the references are RGB on purpose.
warnings.filterwarnings("ignore", message="Palette images with Transparency")

# --- a minimal PNG writer (independent of libpng) ---------------------------------------------

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """A scanline's bytes (without the filter byte) from its samples (ints)."""
    if depth == 8:
        return bytes(int(s) for s in samples)
    if depth == 16:
        return b"".join(struct.pack(">H", int(s)) for s in samples)
    out, bits, filled = bytearray(), 0, 0
    for s in samples:
        bits = (bits << depth) | int(s)
        filled += depth
        if filled == 8:
            out.append(bits)
            bits, filled = 0, 0
    if filled:
        out.append(bits << (8 - filled))
    return bytes(out)


def write_png(path, samples, depth, color_type, palette=None, trns=None, interlace=False):
    """samples: array [height, width, channels] of ints."""
    height, width = samples.shape[:2]
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in sub:
            raw.append(0)  # filter type None
            raw += pack_row(row.reshape(-1), depth)
    body = b"\x89PNG\r\n\x1a\n"
    body += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        body += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        body += chunk(b"tRNS", trns)
    body += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    body += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(body)


def expand(samples, depth, color_type, palette=None):
    """NumPy's 8-bit RGB for the samples, as a2q documents the conversion."""
    s = samples.astype(np.float64)
    if color_type == 3:
        return np.asarray(palette, dtype=np.uint8)[samples[..., 0]]
    if depth == 16:
        s = np.floor(s * 255 / 65535 + 0.5)  # no ties: v * 255 / 65535 = v / 257 is never k + 1/2
    elif depth < 8:
        s = s * (255 // (2 ** depth - 1))
    s = s.astype(np.uint8)
    if color_type in (0, 4):
        return np.repeat(s[..., :1], 3, axis=2)
    return s[..., :3]


def test_picture(rng, height, width):
    """A smooth picture with texture and noise (float in 0..1), [height, width, 3]."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = []
    for c in range(3):
        phase = rng.uniform(0, 2 * np.pi, 3)
        plane = 0.5 + 0.25 * np.sin(7 * x + phase[0]) * np.cos(5 * y + phase[1]) + 0.15 * np.sin(40 * (x + y) + phase[2])
        planes.append(plane + rng.normal(0, 0.05, (height, width)))
    return np.clip(np.stack(planes, axis=2), 0, 1)


def codecs(folder):
    rng = np.random.default_rng(25)
    os.makedirs(folder, exist_ok=True)
    manifest = {"files": [], "broken": []}

    def record(name, expected, pillow):
        """expected: NumPy's RGB from the samples written, or None (JPEG: Pillow is the reference)."""
        entry = {"file": name, "references": {}}
        if expected is not None:
            np.ascontiguousarray(expected, dtype=np.uint8).tofile(os.path.join(folder, name + ".numpy.rgb"))
            entry["references"]["numpy"] = name + ".numpy.rgb"
        if pillow:
            decoded = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
            decoded.tofile(os.path.join(folder, name + ".pillow.rgb"))
            entry["references"]["pillow"] = name + ".pillow.rgb"
        shape = expected.shape if expected is not None else decoded.shape
        entry["height"], entry["width"] = int(shape[0]), int(shape[1])
        manifest["files"].append(entry)

    height, width = 23, 37  # odd sizes: partial bytes at 1-4 bits, partial Adam7 blocks
    for color_type, depths in [(0, [1, 2, 4, 8, 16]), (2, [8, 16]), (3, [1, 2, 4, 8]), (4, [8, 16]), (6, [8, 16])]:
        for depth in depths:
            for interlace in ([False, True] if depth in (8, 2) else [False]):
                channels = CHANNELS[color_type]
                palette = trns = None
                if color_type == 3:
                    entries = 2 ** depth
                    palette = rng.integers(0, 256, (entries, 3))
                    trns = bytes(rng.integers(0, 256, min(entries, 5)).astype(np.uint8))
                    samples = rng.integers(0, entries, (height, width, 1))
                else:
                    samples = rng.integers(0, 2 ** depth, (height, width, channels))
                    if color_type == 0 and depth == 8:
                        trns = struct.pack(">H", 7)  # a gray tRNS: still no alpha in the output
                name = f"png-type{color_type}-{depth}bit{'-adam7' if interlace else ''}.png"
                write_png(os.path.join(folder, name), samples, depth, color_type, palette, trns, interlace)
                record(name, expand(samples, depth, color_type, palette), pillow=depth != 16)

    picture = (test_picture(rng, 61, 83) * 255 + 0.5).astype(np.uint8)
    jpeg_cases = [
        ("jpeg-420.jpg", "RGB", {"quality": 90}),
        ("jpeg-422.jpg", "RGB", {"quality": 90, "subsampling": 1}),
        ("jpeg-444.jpg", "RGB", {"quality": 95, "subsampling": 0}),
        ("jpeg-progressive.jpg", "RGB", {"quality": 85, "progressive": True}),
        ("jpeg-gray.jpg", "L", {"quality": 90}),
        ("jpeg-cmyk.jpg", "CMYK", {"quality": 95}),
    ]
    for name, mode, options in jpeg_cases:
        Image.fromarray(picture).convert(mode).save(os.path.join(folder, name), "JPEG", **options)
        record(name, None, pillow=True)

    # Files named for the other format: a2q goes by the first bytes.
    samples = rng.integers(0, 256, (9, 11, 3))
    write_png(os.path.join(folder, "really-a-png.jpg"), samples, 8, 2)
    record("really-a-png.jpg", expand(samples, 8, 2), pillow=True)
    with open(os.path.join(folder, "jpeg-420.jpg"), "rb") as f:
        jpeg = f.read()
    with open(os.path.join(folder, "really-a-jpeg.PNG"), "wb") as f:
        f.write(jpeg)
    record("really-a-jpeg.PNG", None, pillow=True)

    def broken(name, data, expect):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        manifest["broken"].append({"file": name, "expect": expect})

    with open(os.path.join(folder, "png-type2-8bit.png"), "rb") as f:
        png = f.read()
    broken("truncated.png", png[: len(png) * 6 // 10], "is a truncated PNG file")
    broken("truncated-in-header.png", png[:20], "is a truncated PNG file")
    broken("truncated-after-image.png", png[:-12], "is a truncated PNG file")  # no IEND chunk
    broken("truncated.jpg", jpeg[: len(jpeg) * 6 // 10], "is a truncated JPEG file")
    broken("truncated-in-header.jpg", jpeg[:100], "is a truncated JPEG file")
    broken("truncated-before-eoi.jpg", jpeg[:-2], "is a truncated JPEG file")  # no end-of-image marker
    corrupt = bytearray(png)
    corrupt[png.index(b"IDAT") + 20] ^= 0x55  # the chunk's CRC no longer matches
    broken("corrupt-crc.png", bytes(corrupt), "is not a valid PNG file")
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    huge += chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    broken("huge.png", huge, "declares 100000×100000 pixels, more than the 2^28")
    broken("text.png", b"This is not an image, only some text that happens to end in .png.\n", "is not a PNG or JPEG file")
    broken("empty.png", b"", "is empty")
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def resize(folder):
    rng = np.random.default_rng(26)
    os.makedirs(folder, exist_ok=True)
    sources = {
        "noise": rng.integers(0, 256, (48, 60, 3)).astype(np.uint8),
        "noise-tall": rng.integers(0, 256, (60, 36, 3)).astype(np.uint8),
        "picture": (test_picture(rng, 90, 120) * 255 + 0.5).astype(np.uint8),
        "picture-square": (test_picture(rng, 72, 72) * 255 + 0.5).astype(np.uint8),
    }
    cases = []
    for name, pixels in sources.items():
        image = Image.fromarray(pixels)
        image.save(os.path.join(folder, name + ".png"))
        height, width = pixels.shape[:2]
        sizes = [(width // r, height // r, True) for r in (2, 3, 4)] + [(width * r, height * r, True) for r in (2, 3)]
        sizes += [(width * 2 // 5, height * 3 // 7, False), (width + 7, height - 5, False)]
        for out_width, out_height, uniform in sizes:
            # Pillow's filter along rows, then along columns (each a one-axis resize, so that the
            # 8-bit intermediate is Pillow's own), and Pillow's direct resize, whose pass order
            # Pillow 13 chooses by itself (rows first for images at least as wide as tall scaled
            # by one factor on both axes, as measured; not always otherwise).
            rows_first = image.resize((out_width, height), Image.BICUBIC).resize((out_width, out_height), Image.BICUBIC)
            direct = image.resize((out_width, out_height), Image.BICUBIC)
            stem = f"{name}-{out_width}x{out_height}"
            np.asarray(rows_first).tofile(os.path.join(folder, stem + ".rows-first.rgb"))
            np.asarray(direct).tofile(os.path.join(folder, stem + ".direct.rgb"))
            cases.append({"source": name + ".png", "width": out_width, "height": out_height,
                          "rows_first": stem + ".rows-first.rgb", "direct": stem + ".direct.rgb",
                          "uniform": uniform})
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)


def psnr(outputs_path, targets_path, count):
    outputs = np.fromfile(outputs_path, dtype=np.float32).astype(np.float64).reshape(count, -1)
    targets = np.fromfile(targets_path, dtype=np.float32).astype(np.float64).reshape(count, -1)
    levels = lambda x: np.floor(np.clip(x * 255, 0, 255) + 0.5)
    mse = ((levels(outputs) - levels(targets)) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        values = np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.where(mse > 0, mse, 1)), 100.0)
    values = np.minimum(values, 100.0)
    print(json.dumps({"per_image": [float(v) for v in values], "mean": float(values.mean())}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "codecs":
        codecs(sys.argv[2])
    elif command == "resize":
        resize(sys.argv[2])
    elif command == "decode":
        np.asarray(Image.open(sys.argv[2]).convert("RGB")).tofile(sys.argv[3])
    elif command == "psnr":
        psnr(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
