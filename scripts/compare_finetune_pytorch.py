#!/usr/bin/env python3
"""Loss curve of `segformer train` against PyTorch (HuggingFace SegFormer + the same batches + AdamW).

    pip install torch transformers onnx pillow
    python3 scripts/compare_finetune_pytorch.py DATA_DIR [--steps 20] [--size 128] [--batch 2] [--lr 1e-4] [--processes N]

DATA_DIR is an ADEChallengeData2016-layout folder (e.g. the `data/` folder `segformer demo` writes).
The script
  1. makes a SegformerForSemanticSegmentation (MiT-b0, 150 labels) with seeded random weights, folds the
     decode head's BatchNorm into linear_fuse (as an eval export does) and exports it to ONNX;
  2. runs `segformer train` on it with augmentation off, fixed order, a constant lr, no head multiplier
     (with --processes N: data-parallel, `mpirun -np N segformer train … --batch-size BATCH/N`);
  3. trains the same PyTorch model on the same batches (HF SegformerImageProcessor, do_reduce_labels,
     sorted file order) with torch.optim.AdamW and the same parameter groups (no weight decay on norms);
  4. prints both loss curves and the largest relative difference per step (target: ≤ 1e-3).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).logits


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--processes", type=int, default=1, help="run ours as mpirun -np N, batch/N per process")
    p.add_argument("--segformer", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "segformer"))
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="finetune-compare-")

    torch.manual_seed(0)
    cfg = SegformerConfig(num_labels=150, classifier_dropout_prob=0.0, drop_path_rate=0.0,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    m = SegformerForSemanticSegmentation(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for prm in m.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 0.01)
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    m.decode_head.linear_fuse = fuse_conv_bn_eval(m.decode_head.linear_fuse, m.decode_head.batch_norm)
    m.decode_head.batch_norm = torch.nn.Identity()
    for prm in m.parameters():
        prm.requires_grad_(True)
    onnx_path = os.path.join(work, "model.onnx")
    x = torch.randn(1, 3, a.size, a.size)
    torch.onnx.export(Logits(m).eval(), (x,), onnx_path, input_names=["pixel_values"], output_names=["logits"],
                      opset_version=17, dynamo=False,
                      dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch", 2: "h", 3: "w"}})

    # Ours.
    log = os.path.join(work, "log.jsonl")
    assert a.batch % a.processes == 0, "--batch must be divisible by --processes"
    launcher = [] if a.processes == 1 else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(a.processes)]
    cmd = launcher + [a.segformer, "train", onnx_path, "--data", a.data, "--val-split", "none", "--no-augment", "--no-shuffle",
           "--lr-schedule", "constant", "--lr", str(a.lr), "--weight-decay", str(a.weight_decay),
           "--head-lr-multiplier", "1", "--max-steps", str(a.steps), "--batch-size", str(a.batch // a.processes),
           "--crop", str(a.size), "--size", str(a.size), "--log-json", log, "--output", os.path.join(work, "run")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ours = [json.loads(line)["loss"] for line in open(log)]

    # PyTorch: same images in sorted order, HF processor, AdamW with no decay on norms.
    images = sorted(glob.glob(os.path.join(a.data, "images", "training", "*")))
    stems = [os.path.splitext(os.path.basename(f))[0] for f in images]
    masks = [os.path.join(a.data, "annotations", "training", s + ".png") for s in stems]
    proc = SegformerImageProcessor(size={"height": a.size, "width": a.size}, do_reduce_labels=True)
    decay = [prm for n, prm in m.named_parameters() if "norm" not in n.lower()]
    no_decay = [prm for n, prm in m.named_parameters() if "norm" in n.lower()]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    per_epoch = len(images) // a.batch
    theirs = []
    for step in range(a.steps):
        b = step % per_epoch
        idx = range(b * a.batch, (b + 1) * a.batch)
        batch = proc([Image.open(images[i]).convert("RGB") for i in idx],
                     segmentation_maps=[Image.open(masks[i]) for i in idx], return_tensors="pt")
        out = m(pixel_values=batch["pixel_values"], labels=batch["labels"])
        theirs.append(out.loss.item())
        out.loss.backward()
        opt.step()
        opt.zero_grad()

    worst = 0.0
    print("step  segformer-swift   pytorch        rel.diff")
    for i, (u, t) in enumerate(zip(ours, theirs)):
        r = abs(u - t) / abs(t)
        worst = max(worst, r)
        print(f"{i + 1:4d}  {u:.7f}       {t:.7f}   {r:.2e}")
    print(f"largest relative difference over {len(ours)} steps: {worst:.2e} ({'within' if worst <= 1e-3 else 'ABOVE'} 1e-3)")
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
