#!/usr/bin/env python3
"""Anchor for `segformer bench --train`: one PyTorch training step of SegformerForSemanticSegmentation
(MiT-b0, 150 labels; forward + HF loss + backward + AdamW) on random inputs, eager mode.

    pip install torch transformers
    python3 scripts/bench_pytorch_train.py --threads 2 --batch 2 --size 512
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = SegformerForSemanticSegmentation(SegformerConfig(num_labels=150)).train()
    opt = torch.optim.AdamW(m.parameters(), lr=6e-5)
    x = torch.randn(a.batch, 3, a.size, a.size)
    labels = torch.randint(0, 150, (a.batch, a.size, a.size))
    times = []
    for i in range(a.warmup + a.iterations):
        t0 = time.perf_counter()
        loss = m(pixel_values=x, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch {torch.__version__} train step: latency median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
