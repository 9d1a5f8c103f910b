extension GraphPass {
    /// A bias-free 1×1 convolution after a spatial resize runs before it instead:
    ///
    ///     Conv1x1(Resize(a), W)  =  Resize'(Conv1x1(a, W))
    ///
    /// Why: with N and C not resized, Resize in mode linear or nearest computes every output pixel of
    /// a channel as a fixed weighted sum of that same channel's input pixels — the same weights for
    /// every channel. A channel map (Σ_c W[m, c]·x[c], pixel by pixel) commutes with any such per-
    /// channel linear map over space. Resize' is the same resize with the channel count of its
    /// `sizes` replaced by the convolution's output channels (shape arithmetic that folds); `scales`,
    /// which keep channel 1:1, stay. Excluded: a bias (it would need the weights to sum to 1),
    /// tf_crop_and_resize (extrapolation adds a constant), antialias, an `axes` attribute, cubic mode.
    ///
    /// When the convolution has fewer output channels than inputs, the resize then moves fewer channels
    /// at the high resolution, and the convolution runs at the low one.
    public static let convBeforeResize = overPointwiseConvs("conv-before-resize", minimumOpset: 11) { conv, r in   // Resize(X, roi, scales, sizes)
        guard conv.bias == nil,
              let resize = r.soleProducer(of: conv.input, OpType.resize), isChannelwiseLinear(resize),
              let before = r.shape(resize.inputs[0]), let after = r.shape(conv.input),
              before.count == 4, after.count == 4, before[0] == after[0], before[1] == after[1] else { return }
        var inputs = resize.inputs
        if let sizes = resize.input(3) {
            inputs[3] = r.replacingChannels(of: sizes, rank: 4, with: conv.outChannels)
        } else if let scales = r.constant(resize.input(2)), scales.dataType == .float,
                  scales.toArray(Float.self).prefix(2) == [1, 1] {
            // scales keep N and C: nothing to change
        } else {
            return
        }
        inputs[0] = r.add(OpType.conv, [resize.inputs[0], conv.weight], attributes: conv.node.attributes)
        r.replace(conv.index)
        r.add(OpType.resize, inputs, attributes: resize.attributes, writing: conv.node.outputs[0])
    }

    /// Whether a Resize is a per-channel linear map over space (see `convBeforeResize`).
    private static func isChannelwiseLinear(_ resize: Node) -> Bool {
        guard let mode = try? resize.string("mode", default: "nearest"), mode == "linear" || mode == "nearest",
              let transform = try? resize.string("coordinate_transformation_mode", default: "half_pixel"),
              transform != "tf_crop_and_resize",
              (try? resize.int("antialias", default: 0)) == 0, resize.attributes["axes"] == nil else { return false }
        return true
    }
}
