#!/usr/bin/env python3
"""Export a HuggingFace SegFormer (or MiT encoder classifier) to ONNX for segformer-swift.

For users who have PyTorch; the Swift runtime itself needs no Python.

    pip install torch transformers onnx
    python3 models/export_segformer.py nvidia/segformer-b0-finetuned-ade-512-512 --out segformer-b0-ade.onnx
    python3 models/export_segformer.py nvidia/mit-b0 --task classification --out mit-b0.onnx --size 224
    python3 models/export_segformer.py ./my-finetuned-checkpoint --out mine.onnx --opset 12

The model id may be a hub id (needs network) or a local folder saved with `save_pretrained`.
The export keeps batch, height and width dynamic, writes `config.json` (id2label) beside the model,
and for opset <= 13 exports attention in "eager" mode, which older opsets require.
"""
import argparse
import json
import os
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="hub id or local folder of a SegFormer / MiT checkpoint")
    p.add_argument("--out", required=True, help="output .onnx path (must not exist unless --overwrite)")
    p.add_argument("--task", choices=["segmentation", "classification"], default="segmentation")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, default=512, help="height/width of the example input")
    p.add_argument("--dynamo", action="store_true", help="use the dynamo exporter (opset >= 18)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()

    if os.path.exists(a.out) and not a.overwrite:
        print(f"error: {a.out} exists (use --overwrite)", file=sys.stderr)
        return 1

    import torch
    from transformers import SegformerForImageClassification, SegformerForSemanticSegmentation

    cls = SegformerForSemanticSegmentation if a.task == "segmentation" else SegformerForImageClassification
    kwargs = {"attn_implementation": "eager"} if a.opset <= 13 else {}
    model = cls.from_pretrained(a.model, **kwargs).eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).logits

    wrapped = Logits(model).eval()
    x = torch.randn(1, 3, a.size, a.size)
    dynamic = {"pixel_values": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    if a.task == "segmentation":
        dynamic["logits"].update({2: "logits_height", 3: "logits_width"})
    with torch.no_grad():
        if a.dynamo:
            torch.onnx.export(wrapped, (x,), a.out, input_names=["pixel_values"], output_names=["logits"],
                              opset_version=max(a.opset, 18), dynamo=True,
                              dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch"),
                                                               2: torch.export.Dim("height"),
                                                               3: torch.export.Dim("width")}})
        else:
            torch.onnx.export(wrapped, (x,), a.out, input_names=["pixel_values"], output_names=["logits"],
                              opset_version=a.opset, dynamic_axes=dynamic, dynamo=False)
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(a.out)), "config.json")
    if not os.path.exists(cfg_path) or a.overwrite:
        with open(cfg_path, "w") as f:
            json.dump(model.config.to_dict(), f, indent=2)
    print(f"wrote {a.out} (opset {a.opset}) and {cfg_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
