#!/usr/bin/env python3
"""Anchor for `segformer bench --train`: one PyTorch training step of SegformerForSemanticSegmentation
(MiT-b0 by default, 150 labels; forward + HF loss + backward + AdamW) on random inputs, eager mode,
HF's default train-mode config (BatchNorm on batch statistics, classifier dropout, drop-path).

    pip install torch transformers
    python3 scripts/bench_pytorch_train.py --threads 2 --batch 2 --size 512 [--variant b2]
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation


# MiT variants as `segformer init --variant` builds them (hidden sizes, depths, decoder width).
WIDE = [64, 128, 320, 512]
VARIANTS = {
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256),
    "b1": (WIDE, [2, 2, 2, 2], 256),
    "b2": (WIDE, [3, 4, 6, 3], 768),
    "b3": (WIDE, [3, 4, 18, 3], 768),
    "b4": (WIDE, [3, 8, 27, 3], 768),
    "b5": (WIDE, [3, 6, 40, 3], 768),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="b0")
    a = p.parse_args()
    hidden, depths, decoder = VARIANTS[a.variant]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = SegformerForSemanticSegmentation(SegformerConfig(num_labels=150, hidden_sizes=hidden, depths=depths,
                                                             decoder_hidden_size=decoder)).train()
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
    print(f"pytorch {torch.__version__} {a.variant} train step: latency median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
