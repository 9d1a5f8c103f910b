import GraphIR
import Runtime

/// Losses of semantic segmentation, written as graph ops so `Autodiff` differentiates them like the
/// rest of the model.
public enum SegmentationLoss {

    /// Appends HuggingFace's `SegformerForSemanticSegmentation` loss to `graph`:
    /// the logits [B, C, h, w] are upsampled bilinearly (align_corners False = Resize linear with
    /// half_pixel) to the label size H×W, then cross-entropy with `ignoreIndex`, mean over the kept
    /// pixels.
    ///
    /// `fused` (the default) writes it as one `UpsampledCrossEntropyLoss` node, which computes the
    /// loss and its gradient tile by tile without the full-resolution B×C×H×W tensors; a batch whose
    /// pixels are all ignored then gives loss 0 and a zero gradient. Unfused it is the standard ops
    /// Resize → SoftmaxCrossEntropyLoss (needs opset ≥ 12; an all-ignored batch gives NaN, as PyTorch).
    ///
    /// Adds a graph input `labels` (int64 [B, H, W]) and returns the graph with the scalar loss
    /// appended to its outputs, and the loss's name.
    public static func appendHuggingFaceLoss(to graph: Graph, logits: String, labels: String, ignoreIndex: Int = 255,
                                             opset: Int, fused: Bool = true) throws -> (graph: Graph, loss: String) {
        guard fused || opset >= 12 else {
            throw SegFormerError.unsupported("segmentation loss: opset \(opset) has no SoftmaxCrossEntropyLoss (needs ≥ 12)")
        }
        let producedOrInput = graph.inputs.contains { $0.name == logits } || graph.nodes.contains { $0.outputs.contains(logits) }
        guard producedOrInput else { throw SegFormerError.invalid("segmentation loss: '\(logits)' is not a value of the graph") }
        let taken = graph.inputs.contains { $0.name == labels } || graph.initializers[labels] != nil
            || graph.nodes.contains { $0.outputs.contains(labels) }
        guard !taken else { throw SegFormerError.invalid("segmentation loss: the name '\(labels)' is already used in the graph") }

        var g = graph
        // Batch dim of the labels: the logits' own (symbolic or known) batch dim when the graph says it.
        let logitsType = g.outputs.first { $0.name == logits }?.type ?? g.valueInfo[logits]
        let batch: Dim = logitsType?.shape?.first ?? .symbol("labels_batch")
        g.inputs.append(ValueInfo(name: labels, type: TensorType(.int64, [batch, .symbol("labels_height"), .symbol("labels_width")])))

        let b = GraphBuilder(graph: g, prefix: "loss")
        let resizeAttrs: [String: Attribute] = ["mode": .string("linear"),
                                                "coordinate_transformation_mode": .string("half_pixel")]
        let lossAttrs: [String: Attribute] = ["reduction": .string("mean"), "ignore_index": .int(ignoreIndex)]
        if fused {
            // second output: d loss / d logits, made in the same pass for the gradient rule
            let loss = b.add(OpType.upsampledCrossEntropyLoss, domain: trainingDomain, [logits, labels],
                             attributes: resizeAttrs.merging(lossAttrs) { a, _ in a }, outputs: 2, name: "cross_entropy")[0]
            var out = b.graph
            out.outputs.append(ValueInfo(name: loss, type: TensorType(.float, [])))
            return (out, loss)
        }
        let labelShape = b.add1(OpType.shape, [labels])
        let logitsShape = b.add1(OpType.shape, [logits])
        func slice(_ v: String, _ start: Int, _ end: Int) -> String {
            b.add1(OpType.slice, [v, b.int64s([start], name: "start"), b.int64s([end], name: "end"), b.int64s([0], name: "axis")])
        }
        let sizes = b.add1(OpType.concat, [slice(logitsShape, 0, 2), slice(labelShape, 1, 3)], attributes: ["axis": .int(0)],
                           name: "upsampled_sizes")
        let upsampled: String
        if opset >= 13 {
            upsampled = b.add1(OpType.resize, [logits, "", "", sizes], attributes: resizeAttrs, name: "upsample_logits")
        } else {
            // opsets 11–12: roi and scales are required inputs; empty tensors say "unused"
            let roi = b.constant(Tensor([Float](), shape: [0]), name: "roi")
            let scales = b.constant(Tensor([Float](), shape: [0]), name: "scales")
            upsampled = b.add1(OpType.resize, [logits, roi, scales, sizes], attributes: resizeAttrs, name: "upsample_logits")
        }
        let loss = b.add1(OpType.softmaxCrossEntropyLoss, [upsampled, labels], attributes: lossAttrs, name: "cross_entropy")
        var out = b.graph
        out.outputs.append(ValueInfo(name: loss, type: TensorType(.float, [])))
        return (out, loss)
    }
}
