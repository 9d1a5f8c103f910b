#!/usr/bin/env python3
"""Anchor for `segformer bench`: onnxruntime's latency on the same model and input size.

    pip install onnxruntime numpy
    python3 scripts/bench_onnxruntime.py MODEL.onnx --threads 2 --batch 1 --height 512 --width 512

Prints a line in the same form as `segformer bench` so the two can be compared in one run.
"""
import argparse
import resource
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else v for d, v in zip(inp.shape, [a.batch, 3, a.height, a.width])]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(a.warmup):
        s.run(None, {inp.name: x})
    times = []
    for _ in range(a.iterations):
        t0 = time.perf_counter()
        s.run(None, {inp.name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"onnxruntime {ort.__version__}: latency median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
