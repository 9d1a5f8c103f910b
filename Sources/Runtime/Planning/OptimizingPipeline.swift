import GraphIR

/// The optimizing stage of compilation: named Graph → Graph passes (Sources/GraphIR/Passes), each
/// given the value types `TypeInference` finds on the graph as it stands, each followed by constant
/// folding and dead-node removal, so the next pass sees the constants the previous one computed.
/// Every pass reports what it changed (`segformer inspect --optimized` prints it).
public enum OptimizingPipeline {
    /// The passes, in order. Canonicalise: LayerNorm and GELU written out in elementary ops (exports
    /// at opsets before the ONNX op) become single nodes. Fuse: scaled dot-product attention becomes
    /// one tiled node; MixFFN's depthwise conv between its Transposes, with its GELU, one channels-last
    /// node; a conv whose output becomes tokens (patch embeddings, spatial reductions) writes them
    /// channels-last itself. Then the decode-head algebra: split a 1×1 conv over its Concat, move each
    /// part before its Resize, fold it into the MatMul that made its input. Then the head goes
    /// channels-last: the sum of resized stage maps becomes one `ResizeSum` over the tokens, which takes
    /// the 1×1 classifier after it as its projection. Last, fusion: each float32 MatMul takes in the
    /// Transposes before it and the bias, residual and Relu after it (and a product of a MixFFN's
    /// depthwise conv takes that conv in, band by band), a LayerNorm of such a product's output becomes
    /// its producer's second output, computed row by row in its epilogue, and each remaining Resize
    /// takes the Add (and Relu) after it (for inference graphs: `ChannelsLastConv`, `ResizeSum`,
    /// `FusedMatMul`, the projected `TokenDepthwiseConv` and `ResizeAdd` have no gradient rule;
    /// training graphs run `trainingPasses` before autodiff and `gradientGraphPasses` after it).
    public static let passes: [GraphPass] = [.fuseLayerNormalization, .fuseGelu, .fuseAttention,
                                             .fuseTokenDepthwiseConv, .fuseConvToTokens, .splitConvOverConcat, .convBeforeResize,
                                             .foldConvIntoMatMul, .fuseResizeSum, .pointwiseConvOverChannelsLast, .fuseMatMulEpilogue,
                                             .fuseTokenDepthwiseProjection, .fuseLayerNormIntoProducer, .fuseResizeAdd]

    /// The passes a training graph's forward part goes through: the rewrites into single nodes whose
    /// gradient rules write the backward (attention, LayerNorm, GELU, MixFFN's depthwise conv over the
    /// tokens with its GELU, whose backward recomputes the GELU's input rather than keeping it), then
    /// the decode-head algebra. Every parameter stays a graph input of its own: the decode-head passes
    /// write the merged weights as nodes of the parameters (Slice, Reshape, Transpose, MatMul), computed
    /// each step — a few small products — so autodiff sends the gradients back to the original tensors,
    /// and what is saved or exported is the original graph with them.
    /// A rewrite here must keep the forward pass's bits, not only its value: the b0 training reference's
    /// 3-step AdamW check sits on a Relu kink (after step 1 one decode-head Relu input is 1.4e-6 from
    /// zero, within the forward's rounding), so a fused kernel that rounds differently flips it.
    /// TokenDepthwiseConv sums in the NCHW kernel's order for that reason (CKernels/vector_math.c).
    public static let trainingPasses: [GraphPass] = [.fuseLayerNormalization, .fuseGelu, .fuseAttention, .fuseTokenDepthwiseConv,
                                                     .splitConvOverConcat, .convBeforeResize, .foldConvIntoMatMul]

    /// The passes a training session's gradient graph (forward + HF loss + backward, as autodiff wrote
    /// it) goes through before it is compiled: nothing there is differentiated any more, so they may
    /// write ops without gradient rules. The forward part keeps its bits (the b0 training reference's
    /// AdamW check sits on a Relu kink, see `trainingPasses`): each float32 MatMul takes in its bias and
    /// residual Adds (and Relu) as one `FusedMatMul` running MatMul's own GEMM and the Adds' own float
    /// operations (Transposes stay nodes there), and each Resize the Add after it as one `ResizeAdd`
    /// (the decode head's sum of resized maps), with the Resize's and the Add's own float operations.
    public static let gradientGraphPasses: [GraphPass] = [.fuseMatMulBiasAndResidual, .fuseResizeAddInGradientGraph]

    /// The op histograms around the pipeline and what each pass changed.
    public struct Report: Sendable, CustomStringConvertible {
        public var before: [String: Int]
        public var after: [String: Int]
        public var passes: [PassReport]

        public var description: String {
            var lines = ["op histogram before → after the optimizing passes:"]
            for op in Set(before.keys).union(after.keys).sorted(by: { (before[$0] ?? 0, $1) > (before[$1] ?? 0, $0) }) {
                let (b, a) = (before[op] ?? 0, after[op] ?? 0)
                let mark = a == b ? "" : "  (\(a > b ? "+" : "")\(a - b))"
                lines.append("  \(op.padding(toLength: max(op.count, 28), withPad: " ", startingAt: 0)) \(b) → \(a)\(mark)")
            }
            lines.append("  total \(before.values.reduce(0, +)) → \(after.values.reduce(0, +))")
            lines.append("passes:")
            lines += passes.map { "  \($0)" }
            return lines.joined(separator: "\n")
        }
    }

    /// Runs `passes` over a sorted, constant-folded graph.
    public static func run(_ graph: Graph, opset: Int, passes: [GraphPass] = passes) throws -> (graph: Graph, report: Report) {
        var g = graph
        var reports: [PassReport] = []
        for pass in passes {
            let inferred = try TypeInference.infer(g, opset: opset)
            var contents = inferred.symbolic
            for (name, t) in inferred.constants where t.dataType.isInteger && t.rank <= 1 && t.count <= 8 {
                contents[name] = inferred.contents(of: name)
            }
            let context = PassContext(types: inferred.types, opset: opset, contents: contents)
            let rewritten = try foldConstants(try pass.rewrite(g, context), opset: opset)
            reports.append(PassReport(pass: pass.name, before: g, after: rewritten))
            g = rewritten
        }
        return (g, Report(before: graph.opCounts, after: g.opCounts, passes: reports))
    }

    /// Runs `trainingPasses` over a training graph (parameters are graph inputs) as it stands: sorted,
    /// identities removed and constants folded first, as `CompiledModel` prepares a graph for `run`.
    public static func runOnTrainingGraph(_ graph: Graph, opset: Int) throws -> (graph: Graph, report: Report) {
        let prepared = try foldConstants(Passes.removeIdentities(Passes.sorted(graph)), opset: opset)
        return try run(prepared, opset: opset, passes: trainingPasses)
    }

    /// Folds every deterministic node whose inputs are constants (running its kernel once), then
    /// drops dead nodes; the result is sorted. A node whose shape rule gives a result above
    /// `MemoryBudget.foldLimitBytes` stays a node (it runs, under the memory budget, when the model does).
    static func foldConstants(_ graph: Graph, opset: Int) throws -> Graph {
        try Passes.foldConstants(graph, isFoldable: { node, inputs in
            guard let schema = try? OpRegistry.schema(for: node, opset: opset), schema.isDeterministic else { return false }
            let context = TypeInferenceContext(node: node, opset: opset,
                                               inputTypes: inputs.map { $0.map { TensorType($0.dataType, known: $0.shape) } },
                                               constantInputs: inputs)
            return !TypeInference.mayExceed(MemoryBudget.foldLimitBytes / 8, schema, context)
        }) { node, inputs in
            let kernel = try OpRegistry.schema(for: node, opset: opset).makeKernel(node, opset)
            do { return try kernel.run(inputs, ExecutionContext.singleThreaded) } catch let e as SegFormerError {
                throw e.prefixed(node.label)
            }
        }
    }
}
