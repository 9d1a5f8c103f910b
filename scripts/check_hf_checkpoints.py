#!/usr/bin/env python3
"""Checks `segformer export` and `segformer export-hf` against PyTorch / transformers / onnxruntime.

Not a test (it needs Python and a built binary); run it after changing the checkpoint code:

    swift build -c release
    python3 scripts/check_hf_checkpoints.py [--segformer .build/release/segformer] [--shared ../shared]

1. export: every fixture folder (transformers-5 names in model.safetensors, legacy names, legacy
   pytorch_model.bin) and a full-size seeded SegFormer-b0 (150 labels, save_pretrained as safetensors and
   as pytorch_model.bin) → ONNX → onnxruntime, against PyTorch's logits (max abs ≤ 1e-4).
2. export-hf: folders, ONNX files (our export; ../shared's TorchScript export when present; a model after
   `segformer step`, i.e. fine-tuned here) → folder → `from_pretrained` → logits against the source's
   (PyTorch's, the stored reference, or onnxruntime on the fine-tuned ONNX), max abs ≤ 1e-4.
Prints one line per case and exits 1 if any fails.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from transformers import SegformerConfig, SegformerForImageClassification, SegformerForSemanticSegmentation
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "TestSupport", "Fixtures", "hf-checkpoints")
TOLERANCE = 1e-4
failures = []


def report(name, diff, scale):
    ok = diff <= TOLERANCE
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max abs diff {diff:.3g} (logits up to {scale:.3g})")
    if not ok:
        failures.append(name)


def tensor(path):
    return numpy_helper.to_array(onnx.load_tensor(path))


def write_tensor(arr, path, name):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(np.ascontiguousarray(arr), name).SerializeToString())


def ort_logits(model, x):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def hf_logits(folder, x, cls=SegformerForSemanticSegmentation):
    m = cls.from_pretrained(folder).eval()
    with torch.no_grad():
        return m(pixel_values=torch.from_numpy(np.array(x))).logits.numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--segformer", default=os.path.join(ROOT, ".build", "release", "segformer"))
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = p.parse_args()

    def segformer(*a):
        r = subprocess.run([args.segformer, *a], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"segformer {' '.join(a)} failed: {r.stderr.strip()}")

    tmp = tempfile.mkdtemp(prefix="check-hf-")
    x = tensor(os.path.join(FIXTURES, "input.pb"))
    y = tensor(os.path.join(FIXTURES, "logits.pb"))

    # 1. export → onnxruntime
    for d in ["seg-v5", "seg-legacy", "seg-bin"]:
        out = os.path.join(tmp, f"{d}.onnx")
        segformer("export", os.path.join(FIXTURES, d), "--out", out)
        report(f"export {d} → onnxruntime vs PyTorch", float(np.abs(ort_logits(out, x) - y).max()), float(np.abs(y).max()))

    torch.manual_seed(0)
    b0 = SegformerForSemanticSegmentation(SegformerConfig(num_labels=150)).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for prm in b0.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 0.02)
        bn = b0.decode_head.batch_norm
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    xb = torch.randn(1, 3, 512, 512, generator=g)
    with torch.no_grad():
        yb = b0(pixel_values=xb).logits.numpy()
    xb = xb.numpy()
    for name, safe in [("b0-safetensors", True), ("b0-bin", False)]:
        folder = os.path.join(tmp, name)
        b0.save_pretrained(folder, safe_serialization=safe)
        out = os.path.join(tmp, f"{name}.onnx")
        segformer("export", folder, "--out", out)
        report(f"export {name} (512×512) → onnxruntime vs PyTorch", float(np.abs(ort_logits(out, xb) - yb).max()),
               float(np.abs(yb).max()))

    # 2. export-hf → from_pretrained
    cases = [("folder seg-bin", os.path.join(FIXTURES, "seg-bin"), [], x, y),
             ("ONNX export of seg-v5", os.path.join(tmp, "seg-v5.onnx"), ["--config", os.path.join(FIXTURES, "seg-v5", "config.json")], x, y),
             ("ONNX export of b0", os.path.join(tmp, "b0-bin.onnx"), [], xb, yb)]
    shared = os.path.join(args.shared, "reference", "segformer-b0-ade")
    if os.path.exists(os.path.join(shared, "model.op17.onnx")):
        xs = tensor(os.path.join(shared, "test_data_set_0", "input_0.pb"))
        ys = tensor(os.path.join(shared, "test_data_set_0", "output_0.pb"))
        cases.append(("../shared TorchScript op17 export", os.path.join(shared, "model.op17.onnx"),
                      ["--config", os.path.join(shared, "config.json")], xs, ys))
    # Fine-tuned here: 2 AdamW steps with `segformer step`, then back to PyTorch.
    labels = np.random.default_rng(0).integers(0, 4, size=(2, 40, 52)).astype(np.int64)
    write_tensor(labels, os.path.join(tmp, "labels.pb"), "labels")
    trained = os.path.join(tmp, "trained.onnx")
    segformer("step", os.path.join(tmp, "seg-v5.onnx"), "--pixel-values", os.path.join(FIXTURES, "input.pb"),
              "--labels", os.path.join(tmp, "labels.pb"), "--steps", "2", "--lr", "1e-2", "--save-model", trained)
    yt = ort_logits(trained, x)
    print(f"     (fine-tuning moved the logits by up to {float(np.abs(yt - y).max()):.3g})")
    cases.append(("ONNX after `segformer step --steps 2`", trained, ["--config", os.path.join(FIXTURES, "seg-v5", "config.json")], x, yt))
    for i, (name, src, extra, xi, yi) in enumerate(cases):
        out = os.path.join(tmp, f"hf-{i}")
        segformer("export-hf", src, "--out", out, *extra)
        report(f"export-hf {name} → from_pretrained", float(np.abs(hf_logits(out, xi) - yi).max()), float(np.abs(yi).max()))

    out = os.path.join(tmp, "hf-cls")
    segformer("export-hf", os.path.join(FIXTURES, "cls"), "--out", out)
    ref = SegformerForImageClassification.from_pretrained(os.path.join(FIXTURES, "cls")).eval()
    xc = np.random.default_rng(1).standard_normal((1, 3, 40, 48)).astype(np.float32)
    with torch.no_grad():
        yc = ref(pixel_values=torch.from_numpy(xc)).logits.numpy()
    report("export-hf classifier folder → from_pretrained", float(np.abs(hf_logits(out, xc, SegformerForImageClassification) - yc).max()),
           float(np.abs(yc).max()))

    print("all passed" if not failures else f"{len(failures)} failed: {failures}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
