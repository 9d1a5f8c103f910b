import Foundation
import GraphIR

// UpsampledCrossEntropyLoss (training domain): HuggingFace's segmentation loss in one kernel.
//   (logits [N, C, h, w] float32, labels [N, H, W] int64/int32) → (loss [], dLogits [N, C, h, w]?)
// It is Resize(logits → N×C×H×W, linear, the node's coordinate_transformation_mode, default half_pixel)
// followed by SoftmaxCrossEntropyLoss(reduction mean, ignore_index), but the N×C×H×W upsampled logits,
// their softmax and their gradient (314 MB each at batch 2, 150 classes, 512²) never exist: the kernel
// walks the label rows, and for one row it interpolates the C×W tile, takes its log-softmax and the
// cross-entropy, and (when the optional second output is asked for) the tile's gradient, which it sends
// straight back through the transpose of the interpolation into the low-resolution gradient.
//
// The second output is d loss / d logits for a loss gradient of 1, computed in the same pass; the
// gradient rule scales it by the incoming loss gradient. With every pixel ignored the loss is 0 and the
// gradient zero (SoftmaxCrossEntropyLoss would give 0/0 = NaN): such a batch teaches nothing.
//
// Resize's own tap tables (and ResizeGrad's transpose of them), but channels-last: the kernel (CKernels'
// ck_upsampled_cross_entropy_row) transposes the low-resolution rows it reads so that a pixel's classes are
// contiguous, and every pass (interpolation, log-softmax, gradient, its transpose) runs along them in
// whole vectors, with no gather or scatter; values agree with the two-op graph up to float rounding.
// Work is split into fixed bands of low-resolution rows (never by thread count): a band computes each
// label row whose first vertical tap it holds, writes its own gradient rows, and hands the gradient of
// rows beyond it (its neighbour's first row) to a sequential pass that adds them after every band is
// done, so the result is the same for every thread count. The loss is summed in Double per band, then
// over bands in order.

extension OpRegistry {
    static let fusedSegmentationLossOps: [OpSchema] = [
        OpSchema(OpType.upsampledCrossEntropyLoss, domain: trainingDomain, inputs: 2...2, outputs: 1...2,
                 inferTypes: { ctx in [TensorType(.float, []), ctx.type(0)] },
                 makeKernel: { node, _ in
                     let p = try UpsampledCrossEntropy.Params(node)
                     let label = node.label
                     let wantGradient = node.outputs.count > 1 && !node.outputs[1].isEmpty
                     return ClosureKernel { inputs, context in
                         try UpsampledCrossEntropy.run(try inputs.required(0), try inputs.required(1, "labels"), p,
                                                       gradient: wantGradient, label: label, context: context)
                     }
                 })
            .withGradient { ctx in
                guard ctx.needs(0) else { return [nil, nil] }
                let g = try ctx.gradient(0)
                // The unit-loss gradient: the node's own second output, or (when the node was built
                // without one) the same op again, asked for it.
                let unit: String
                if ctx.node.outputs.count > 1 && !ctx.node.outputs[1].isEmpty {
                    unit = ctx.output(1)
                } else {
                    unit = ctx.builder.add(OpType.upsampledCrossEntropyLoss, domain: trainingDomain,
                                           [ctx.input(0), ctx.input(1)], attributes: ctx.node.attributes, outputs: 2)[1]
                }
                return [ctx.builder.add1(OpType.mul, [g, unit]), nil]
            },
    ]
}
