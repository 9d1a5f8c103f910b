#!/usr/bin/env python3
"""The README's training scaling table: one training step (forward + HF loss + backward + AdamW) of
`segformer bench --train` beside PyTorch eager (`scripts/bench_pytorch_train.py`) in the same run, per
variant and batch size, at one image size. Prints a markdown table: median step time and peak RSS of
both, and their ratios (ours / PyTorch).

    python3 scripts/training_scaling_table.py [--variants b0 b2] [--batches 2 8] [--size 512] [--threads 2]

Each cell runs ours first, then PyTorch, as separate processes (peak RSS is per process). Our model is
`segformer init --variant V --num-labels 150`, PyTorch's the same variant in HF's default config.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RESULT = re.compile(r"latency median ([\d.]+) ms, min ([\d.]+) ms, peak (\d+) MB")


def measure(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = RESULT.search(out)
    if not m:
        sys.exit(f"no timing in the output of {' '.join(cmd)}:\n{out}")
    return float(m.group(1)), int(m.group(3))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variants", nargs="+", default=["b0", "b2"])
    p.add_argument("--batches", nargs="+", type=int, default=[2, 8])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--segformer", default=os.path.join(ROOT, ".build", "release", "segformer"))
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in a.variants:
            model = os.path.join(tmp, v + ".onnx")
            subprocess.run([a.segformer, "init", "--variant", v, "--num-labels", "150", "--out", model],
                           check=True, capture_output=True)
            for b in a.batches:
                common = ["--batch", str(b), "--threads", str(a.threads), "--iterations", str(a.iterations)]
                ours = measure([a.segformer, "bench", model, "--train",
                                "--height", str(a.size), "--width", str(a.size), "--warmup", "1"] + common)
                torch = measure([sys.executable, os.path.join(ROOT, "scripts", "bench_pytorch_train.py"),
                                 "--variant", v, "--size", str(a.size), "--warmup", "1"] + common)
                rows.append((v, b, ours, torch))
                print(f"{v} batch {b}: ours {ours[0]:.0f} ms {ours[1]} MB, pytorch {torch[0]:.0f} ms {torch[1]} MB",
                      file=sys.stderr)
    print(f"| model | batch | segformer-swift | PyTorch eager | time ratio | memory ratio |")
    print(f"|---|---|---|---|---|---|")
    for v, b, (t, m), (pt, pm) in rows:
        print(f"| {v} {a.size}² | {b} | {t:.0f} ms, {m} MB | {pt:.0f} ms, {pm} MB | {t / pt:.2f}× | {m / pm:.2f}× |")


if __name__ == "__main__":
    main()
