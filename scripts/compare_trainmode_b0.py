#!/usr/bin/env python3
"""Full-size check of training-mode exports: SegFormer-b0 (150 labels, seeded random weights and
running statistics) with its decode-head BatchNorm in train mode, dropout and drop-path 0, exported
with torch.onnx TrainingMode.TRAINING at opset 17; PyTorch's 3 AdamW steps on one batch against
`segformer step --steps 3`: the 4 losses, the parameters (the reference README's AdamW criterion) and
the running statistics after 3 steps (and how far float32 PyTorch itself is from float64 PyTorch). Then,
when DATA is given (ADEChallengeData2016 layout; its validation images are trained on),
`segformer init` (HF's train-mode graph) → `segformer train` for a few steps → onnxruntime runs the
written model.onnx (inference form) with `segformer run`'s logits.

    pip install torch transformers onnx onnxruntime
    python3 scripts/compare_trainmode_b0.py [--size 64] [--data ../shared/data/ade20k-samples]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import SegformerConfig, SegformerForSemanticSegmentation

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from make_tiny_segformer import jitter, write_tensor  # noqa: E402
from make_trainmode_fixtures import export_training, randomise_running_statistics, state_mapping, three_adamw_steps  # noqa: E402,E501

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "release", "segformer")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--data")
    args = ap.parse_args()
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix="trainmode-b0-")
    cfg = SegformerConfig(num_labels=150, classifier_dropout_prob=0.0, drop_path_rate=0.0)
    m = SegformerForSemanticSegmentation(cfg).train()
    jitter(m, 51)
    g = torch.Generator().manual_seed(52)
    randomise_running_statistics(m, g)
    s = args.size
    x = torch.randn(2, 3, s, s, generator=g)
    labels = torch.randint(0, 150, (2, s, s), generator=g)
    labels[torch.rand(2, s, s, generator=g) < 0.15] = 255
    write_tensor(x.numpy(), f"{tmp}/x.pb", "pixel_values")
    write_tensor(labels.numpy().astype(np.int64), f"{tmp}/y.pb", "labels")
    export_training(m, x, f"{tmp}/b0.onnx", 17)
    mapping = state_mapping(f"{tmp}/b0.onnx", m)
    initial = {k: v.detach().clone().numpy() for k, v in m.state_dict().items()}

    # The same 3 steps in float64: how far float32 PyTorch itself lands from exact arithmetic.
    import copy
    _, _, after64 = three_adamw_steps(copy.deepcopy(m).double(), x.double(), labels)
    losses, grads, after = three_adamw_steps(m, x, labels)

    out = subprocess.run([BIN, "step", f"{tmp}/b0.onnx", "--pixel-values", f"{tmp}/x.pb", "--labels", f"{tmp}/y.pb",
                          "--steps", "3", "--lr", "1e-3", "--weight-decay", "0.01", "--save-model", f"{tmp}/trained.onnx",
                          "--save-gradients", f"{tmp}/grads.onnx"],
                         capture_output=True, text=True, check=True).stdout
    ours = [float(l.split()[1]) for l in out.splitlines() if l.startswith("loss ")]
    print("PyTorch losses:", losses)
    print("ours          :", ours)
    print("max relative loss difference: %.3g" % max(abs(a - b) / abs(b) for a, b in zip(ours, losses)))

    trained = {i.name: numpy_helper.to_array(i) for i in onnx.load(f"{tmp}/trained.onnx").graph.initializer}
    ours_grads = {i.name: numpy_helper.to_array(i) for i in onnx.load(f"{tmp}/grads.onnx").graph.initializer}
    gtotal = np.sqrt(sum(float((grads[p] ** 2).sum()) for p in grads))
    gworst = []
    for init, (name, transposed) in mapping.items():
        if name in grads and init in ours_grads:
            ref = grads[name].T if transposed else grads[name]
            gworst.append((float(np.linalg.norm(ours_grads[init] - ref) / (1e-3 * np.linalg.norm(ref) + 1e-7 * gtotal)), name))
    gworst.sort(reverse=True)
    print("first-step gradients: worst ‖g − g_ref‖ / (1e-3‖g_ref‖ + 1e-7‖all‖) = %.3g (%s) over %d tensors (criterion ≤ 1)"
          % (gworst[0][0], gworst[0][1], len(gworst)))
    total = np.sqrt(sum(float((grads[p] ** 2).sum()) for p in grads))
    ratios = []
    for init, (name, transposed) in mapping.items():
        ref = after[name].T if transposed else after[name]
        got = trained[init]
        if name.endswith("running_mean") or name.endswith("running_var"):
            print("%s: relative difference %.3g" % (name, np.linalg.norm(got - ref) / np.linalg.norm(ref)))
            continue
        if np.linalg.norm(grads[name]) <= 1e-6 * total:
            continue
        p0 = initial[name].T if transposed else initial[name]
        ref64 = after64[name].T if transposed else after64[name]
        ratios.append((np.linalg.norm(got - ref) / np.linalg.norm(ref - p0), name, np.linalg.norm(grads[name]) / total,
                       np.linalg.norm(ref - ref64) / np.linalg.norm(ref64 - p0), np.linalg.norm(got - ref64) / np.linalg.norm(ref64 - p0)))
    ratios.sort(reverse=True)
    print("AdamW: worst ‖p − p_ref‖ / ‖p_ref − p_initial‖ over %d tensors: %.3g (criterion ≤ 1e-3)" % (len(ratios), ratios[0][0]))
    for r, name, g, t64, o64 in ratios[:5]:
        print("  %.3g  %s  (gradient norm %.2g of the global; against float64 PyTorch: float32 PyTorch %.3g, ours %.3g)"
              % (r, name, g, t64, o64))
    print("against float64 PyTorch, worst over all tensors: float32 PyTorch %.3g, ours %.3g"
          % (max(t[3] for t in ratios), max(t[4] for t in ratios)))

    if args.data:
        run = f"{tmp}/run"
        subprocess.run([BIN, "init", "--variant", "b0", "--num-labels", "150", "--out", f"{tmp}/init.onnx"], check=True)
        subprocess.run([BIN, "train", f"{tmp}/init.onnx", "--images", f"{args.data}/images/validation",
                        "--masks", f"{args.data}/annotations/validation", "--max-steps", "2", "--batch-size", "2",
                        "--crop", "128", "--size", "128", "--val-split", "none", "--output", run, "--seed", "3"], check=True)
        import onnxruntime as ort
        xs = np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32)
        write_tensor(xs, f"{tmp}/in.pb", "pixel_values")
        subprocess.run([BIN, "run", f"{run}/model.onnx", "--input", f"pixel_values={tmp}/in.pb", "--output-dir", f"{tmp}/out"],
                       check=True, capture_output=True)
        with open(f"{tmp}/out/logits.pb", "rb") as f:
            t = onnx.TensorProto()
            t.ParseFromString(f.read())
        mine = numpy_helper.to_array(t)
        theirs = ort.InferenceSession(f"{run}/model.onnx").run(None, {"pixel_values": xs})[0]
        ops = sorted({n.op_type for n in onnx.load(f"{run}/model.onnx").graph.node})
        print("trained model.onnx ops:", ops)
        print("onnxruntime vs segformer run on model.onnx: max abs %.3g" % float(np.abs(mine - theirs).max()))


if __name__ == "__main__":
    main()
