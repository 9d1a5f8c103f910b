#!/usr/bin/env python3
"""Latency and peak memory of `segformer bench` beside onnxruntime, over input sizes and batches.

    python3 scripts/bench_sizes.py MODEL.onnx [--sizes 256 512 1024 2048] [--batches 1 4] [--threads 2]

MODEL must have symbolic batch/height/width (e.g. `models/export_segformer.py … --opset 12`). For every
(batch, size) both runtimes run in the same invocation, one after the other, so the ratio holds even on a
busy machine where absolute times do not. Prints a Markdown table (the README's table comes from it).
A cell that fails (e.g. out of memory) says so instead of a number; nothing is skipped silently.
"""
import argparse
import os
import re
import subprocess
import sys

LINE = re.compile(r"latency median ([0-9.]+) ms, min ([0-9.]+) ms, peak ([0-9]+) MB")
HERE = os.path.dirname(os.path.abspath(__file__))


def measure(cmd):
    """Runs one benchmark command; returns (median ms, peak MB) or the reason it failed."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = LINE.search(p.stdout)
    if p.returncode != 0 or not m:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed ({err[:60]})"
    return float(m.group(1)), int(m.group(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--segformer", default=os.path.join(HERE, "..", ".build", "release", "segformer"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=5)
    a = ap.parse_args()
    if not os.path.exists(a.segformer):
        sys.exit(f"error: {a.segformer} not found (swift build -c release first)")

    print(f"model {os.path.basename(a.model)}, {a.threads} threads, median of {a.iterations} runs")
    print()
    print("| batch | size | ours ms | onnxruntime ms | time ratio | ours MB | onnxruntime MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for b in a.batches:
        for s in a.sizes:
            common = ["--batch", str(b), "--height", str(s), "--width", str(s),
                      "--threads", str(a.threads), "--iterations", str(a.iterations)]
            ours = measure([a.segformer, "bench", a.model] + common)
            ort = measure([sys.executable, os.path.join(HERE, "bench_onnxruntime.py"), a.model] + common)
            if isinstance(ours, str) or isinstance(ort, str):
                o = ours if isinstance(ours, str) else f"{ours[0]:.0f}"
                r = ort if isinstance(ort, str) else f"{ort[0]:.0f}"
                print(f"| {b} | {s} | {o} | {r} | – | – | – | – |", flush=True)
                continue
            print(f"| {b} | {s} | {ours[0]:.0f} | {ort[0]:.0f} | {ours[0] / ort[0]:.2f}× | {ours[1]} | {ort[1]} "
                  f"| {ours[1] / ort[1]:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
