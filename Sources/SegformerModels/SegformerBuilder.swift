import Foundation
import GraphIR

/// Hyper-parameters of a SegFormer (HuggingFace `SegformerConfig` fields the architecture uses).
public struct SegformerConfig: Sendable, Equatable {
    public var numChannels = 3
    public var hiddenSizes: [Int]
    public var depths: [Int]
    public var numAttentionHeads: [Int]
    public var srRatios: [Int]
    public var patchSizes: [Int]
    public var strides: [Int]
    public var mlpRatios: [Int]
    public var decoderHiddenSize: Int
    public var numLabels: Int
    public var id2label: [Int: String]
    /// HF's init std (`initializer_range`).
    public var initializerRange: Float = 0.02
    /// Train-mode regularisation (HF's `SegformerConfig` defaults): dropout after the attention and MLP
    /// projections, on the attention probabilities, before the classifier; stochastic depth spread
    /// linearly over all blocks (block k of n: rate·k/(n−1)).
    public var hiddenDropoutProb = 0.0
    public var attentionProbsDropoutProb = 0.0
    public var classifierDropoutProb = 0.1
    public var dropPathRate = 0.1

    public init(hiddenSizes: [Int], depths: [Int], numAttentionHeads: [Int] = [1, 2, 5, 8], srRatios: [Int] = [8, 4, 2, 1],
                patchSizes: [Int] = [7, 3, 3, 3], strides: [Int] = [4, 2, 2, 2], mlpRatios: [Int] = [4, 4, 4, 4],
                decoderHiddenSize: Int, numLabels: Int, id2label: [Int: String] = [:], numChannels: Int = 3) {
        self.hiddenSizes = hiddenSizes
        self.depths = depths
        self.numAttentionHeads = numAttentionHeads
        self.srRatios = srRatios
        self.patchSizes = patchSizes
        self.strides = strides
        self.mlpRatios = mlpRatios
        self.decoderHiddenSize = decoderHiddenSize
        self.numLabels = numLabels
        self.id2label = id2label
        self.numChannels = numChannels
    }

    /// The MiT variants b0…b5 of the paper / HF hub (nvidia/mit-bN).
    public static func variant(_ name: String, numLabels: Int = 150, id2label: [Int: String] = [:]) throws -> SegformerConfig {
        let wide = [64, 128, 320, 512]
        let (hidden, depths, decoder): ([Int], [Int], Int)
        switch name.lowercased().replacingOccurrences(of: "mit-", with: "") {
        case "b0": (hidden, depths, decoder) = ([32, 64, 160, 256], [2, 2, 2, 2], 256)
        case "b1": (hidden, depths, decoder) = (wide, [2, 2, 2, 2], 256)
        case "b2": (hidden, depths, decoder) = (wide, [3, 4, 6, 3], 768)
        case "b3": (hidden, depths, decoder) = (wide, [3, 4, 18, 3], 768)
        case "b4": (hidden, depths, decoder) = (wide, [3, 8, 27, 3], 768)
        case "b5": (hidden, depths, decoder) = (wide, [3, 6, 40, 3], 768)
        default: throw SegFormerError.invalid("unknown SegFormer variant '\(name)' (expected b0…b5)")
        }
        return SegformerConfig(hiddenSizes: hidden, depths: depths, decoderHiddenSize: decoder, numLabels: numLabels,
                               id2label: id2label)
    }

    public var numStages: Int { hiddenSizes.count }

    func validate() throws {
        let n = hiddenSizes.count
        guard n >= 1, n <= 8 else { throw SegFormerError.invalid("SegformerConfig: need 1…8 stages, got \(n)") }
        for (name, list) in [("depths", depths), ("num_attention_heads", numAttentionHeads), ("sr_ratios", srRatios),
                             ("patch_sizes", patchSizes), ("strides", strides), ("mlp_ratios", mlpRatios)] {
            guard list.count == n else {
                throw SegFormerError.invalid("SegformerConfig: \(name) has \(list.count) entries, hidden_sizes has \(n)")
            }
            guard list.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
                throw SegFormerError.invalid("SegformerConfig: \(name) \(list) must be in 1…4096")
            }
        }
        for i in 0..<n where hiddenSizes[i] < 1 || hiddenSizes[i] > 65536 || hiddenSizes[i] % numAttentionHeads[i] != 0 {
            throw SegFormerError.invalid("SegformerConfig: hidden size \(hiddenSizes[i]) of stage \(i) must be a positive multiple of its \(numAttentionHeads[i]) heads")
        }
        guard decoderHiddenSize >= 1, decoderHiddenSize <= 65536 else {
            throw SegFormerError.invalid("SegformerConfig: decoder_hidden_size \(decoderHiddenSize) out of range")
        }
        guard numLabels >= 1, numLabels <= 1 << 20 else {
            throw SegFormerError.invalid("SegformerConfig: num_labels \(numLabels) out of range")
        }
        guard numChannels >= 1, numChannels <= 64 else {
            throw SegFormerError.invalid("SegformerConfig: num_channels \(numChannels) out of range")
        }
        for (name, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb),
                          ("classifier_dropout_prob", classifierDropoutProb), ("drop_path_rate", dropPathRate)]
            where !(p >= 0 && p < 1) {
            throw SegFormerError.invalid("SegformerConfig: \(name) \(p) must be in [0, 1)")
        }
    }
}

/// Builds SegformerForSemanticSegmentation or SegformerForImageClassification natively as an opset-17
/// graph. The segmentation model comes in one of two forms: `.inference` (eval mode: decode-head
/// BatchNorm folded into a biased `linear_fuse`, no dropout) or `.training` (HF's train mode:
/// `linear_fuse` without bias → BatchNormalization training_mode=1 with running statistics, dropout and
/// drop-path as torch.onnx exports them; `Passes.inferenceForm` turns it into the eval graph).
/// Initializers carry HF parameter names
/// (transformers ≥ 5: `segformer.stages.0.blocks.0.attention.q_proj.weight`); Linear weights are
/// stored as MatMul right operands [in, out] (the transpose of PyTorch's [out, in]).
public enum SegformerBuilder {
    /// Deterministic normal samples (SplitMix64 + Box–Muller); not PyTorch's stream, same distribution.
    struct Normal {
        var state: UInt64
        var spare: Float?
        init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
        mutating func nextUInt64() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Double { (Double(nextUInt64() >> 11) + 0.5) / Double(1 << 53) }
        mutating func next() -> Float {
            if let s = spare { spare = nil; return s }
            let r = (-2 * log(uniform())).squareRoot(), t = 2 * Double.pi * uniform()
            spare = Float(r * sin(t))
            return Float(r * cos(t))
        }
    }

    /// Which HF model class the graph is: the all-MLP decode head (logits N×labels×H/4×W/4) or
    /// `SegformerForImageClassification`'s mean-pooled linear classifier (logits N×labels).
    public enum Head: String, Sendable {
        case semanticSegmentation = "SegformerForSemanticSegmentation"
        case imageClassification = "SegformerForImageClassification"
    }

    public enum Form: String, Sendable { case inference, training }

    /// Emits the graph; parameters are initialised as the installed transformers' `_init_weights` does:
    /// Linear and Conv weights normal(0, initializer_range), biases 0, LayerNorm and BatchNorm weight 1 /
    /// bias 0, running mean 0 / variance 1.
    public static func build(config: SegformerConfig, head: Head = .semanticSegmentation, seed: UInt64 = 0,
                             form: Form = .inference) throws -> Model {
        try config.validate()
        var rng = Normal(seed: seed)
        let input = ValueInfo(name: "pixel_values", type: TensorType(.float, [.symbol("batch"), .known(config.numChannels),
                                                                                 .symbol("height"), .symbol("width")]))
        let b = GraphBuilder(graph: Graph(name: "segformer", inputs: [input]), prefix: "")
        let w = Writer(builder: b, std: config.initializerRange)
        if form == .training {
            w.regularisation = Writer.Regularisation(hidden: config.hiddenDropoutProb, attention: config.attentionProbsDropoutProb,
                                                     dropPath: config.dropPathRate, blocks: config.depths.reduce(0, +))
        }

        // Encoder.
        var x = "pixel_values"
        var inChannels = config.numChannels
        var features: [(value: String, hw: String, channels: Int)] = []
        var lastTokens = ""
        for s in 0..<config.numStages {
            let c = config.hiddenSizes[s], p = "segformer.stages.\(s)"
            let k = config.patchSizes[s]
            let conv = w.conv(x, "\(p).patch_embeddings.proj", inC: inChannels, outC: c, kernel: k, stride: config.strides[s],
                              pad: k / 2, rng: &rng)
            // [B, C, H, W] → spatial size [H, W] (kept for the reshapes back to images).
            let shape = b.add1(OpType.shape, [conv], name: "\(p)/Shape")
            let hw = b.add1(OpType.slice, [shape, w.int64s([2], "starts"), w.int64s([4], "ends")], name: "\(p)/hw")
            let toImage = b.add1(OpType.concat, [w.int64s([0, 0], "keep_bc"), hw], attributes: ["axis": .int(0)],
                                 name: "\(p)/image_shape")
            var h = w.layerNorm(w.tokens(conv, "\(p).patch_embeddings"), "\(p).patch_embeddings.layer_norm", c)
            for j in 0..<config.depths[s] {
                h = w.block(h, "\(p).blocks.\(j)", channels: c, heads: config.numAttentionHeads[s], sr: config.srRatios[s],
                            mlp: c * config.mlpRatios[s], toImage: toImage, rng: &rng)
            }
            h = w.layerNorm(h, "\(p).layer_norm", c)
            lastTokens = h
            x = w.image(h, toImage, "\(p)")
            features.append((x, toImage, c))
            inChannels = c
        }

        var metadata: [String: String] = ["architecture": head.rawValue]
        if !config.id2label.isEmpty {
            metadata["id2label"] = config.id2label.keys.sorted().map { "\($0):\(config.id2label[$0]!)" }.joined(separator: "\n")
        }
        if head == .imageClassification {
            // Global average pooling over the last stage's tokens, then `classifier` (Linear).
            let pooled = b.add1(OpType.reduceMean, [lastTokens], attributes: ["axes": .ints([1]), "keepdims": .int(0)],
                                name: "/pooling/ReduceMean")
            let c = config.hiddenSizes[config.numStages - 1]
            let logits = w.linear(pooled, "classifier", weight: w.normal([config.numLabels, c], rng: &rng), inF: c,
                                  outF: config.numLabels, output: "logits")
            b.addOutput(logits, type: TensorType(.float, [.symbol("batch"), .known(config.numLabels)]))
            return Model(graph: b.graph, opsetImports: ["": 17], metadata: metadata)
        }

        // Decode head: per-stage linear projection, upsample to stage-0 size, concat (last stage first), fuse.
        let d = config.decoderHiddenSize
        let firstShape = b.add1(OpType.shape, [features[0].value], name: "decode_head/Shape")
        let outHW = b.add1(OpType.slice, [firstShape, w.int64s([2], "starts"), w.int64s([4], "ends")],
                           name: "decode_head/hw")
        var upsampled: [String] = []
        for (s, f) in features.enumerated() {
            let p = "decode_head.linear_projections.\(s).proj"
            let proj = w.linear(w.tokens(f.value, "decode_head.linear_projections.\(s)"), p, inF: f.channels, outF: d, rng: &rng)
            var img = w.image(proj, f.hw, "decode_head.linear_projections.\(s)")
            if s > 0 {
                let bc = b.add1(OpType.slice, [b.add1(OpType.shape, [img]), w.int64s([0], "starts"), w.int64s([2], "ends")])
                let sizes = b.add1(OpType.concat, [bc, outHW], attributes: ["axis": .int(0)])
                img = b.add1(OpType.resize, [img, "", "", sizes],
                             attributes: ["mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel")],
                             name: "decode_head/Resize_\(s)")
            }
            upsampled.append(img)
        }
        let cat = b.add1(OpType.concat, upsampled.reversed(), attributes: ["axis": .int(1)], name: "decode_head/Concat")
        var fused = w.conv(cat, "decode_head.linear_fuse", inC: d * config.numStages, outC: d, kernel: 1, stride: 1, pad: 0,
                           bias: form == .inference, rng: &rng)
        if form == .training { fused = w.batchNormTraining(fused, "decode_head.batch_norm", d) }
        var act = b.add1(OpType.relu, [fused], name: "decode_head/activation")
        if form == .training { act = w.dropout(act, config.classifierDropoutProb, "decode_head.dropout") }
        let logits = w.conv(act, "decode_head.classifier", inC: d, outC: config.numLabels, kernel: 1, stride: 1, pad: 0,
                            rng: &rng, output: "logits")
        b.addOutput(logits, type: TensorType(.float, [.symbol("batch"), .known(config.numLabels),
                                                      .symbol("logits_height"), .symbol("logits_width")]))

        return Model(graph: b.graph, opsetImports: ["": 17], metadata: metadata)
    }

    /// Emits layers; names parameters after HF modules.
    final class Writer {
        let builder: GraphBuilder
        let std: Float
        private var constants: [String: String] = [:]

        /// Train-mode dropout rates; nil builds the eval graph.
        struct Regularisation {
            var hidden: Double, attention: Double, dropPath: Double
            /// Blocks in all stages (drop-path's rate grows linearly over them).
            var blocks: Int
        }
        var regularisation: Regularisation?
        /// Blocks emitted so far (the index of the next block's drop-path rate).
        private var blocksEmitted = 0

        init(builder: GraphBuilder, std: Float) {
            self.builder = builder
            self.std = std
        }

        /// Dropout as torch.onnx exports it in training mode (ratio and training_mode inputs, mask
        /// output); nothing at ratio 0.
        func dropout(_ x: String, _ ratio: Double, _ scope: String) -> String {
            guard ratio > 0 else { return x }
            let path = "/" + scope.replacingOccurrences(of: ".", with: "/")
            let training = constants["training_mode"] ?? {
                let on = Tensor(uninitialized: .bool, shape: [])
                on.pointer(Bool.self)[0] = true
                let name = builder.constant(on, name: "training_mode")
                constants["training_mode"] = name
                return name
            }()
            return builder.add(OpType.dropout, [x, scalar(Float(ratio), "ratio"), training], outputs: 2,
                               name: path + "/Dropout")[0]
        }

        /// HF's drop_path on tokens [B, N, C] as torch.onnx exports it: x / keep · floor(keep + U[B, 1, 1]).
        func dropPath(_ x: String, _ rate: Double, _ scope: String) -> String {
            guard rate > 0 else { return x }
            let b = builder, path = "/" + scope.replacingOccurrences(of: ".", with: "/")
            let keep = scalar(Float(1 - rate), "keep_prob")
            let batch = b.add1(OpType.slice, [b.add1(OpType.shape, [x]), int64s([0], "starts"), int64s([1], "ends")])
            let shape = b.add1(OpType.concat, [batch, int64s([1, 1], "ones")], attributes: ["axis": .int(0)])
            let zeros = b.add1(OpType.constantOfShape, [shape], attributes: ["value": .tensor(Tensor([Float(0)], shape: [1]))])
            let u = b.add1(OpType.randomUniformLike, [zeros], attributes: ["dtype": .int(Int(DataType.float.rawValue))],
                           name: path + "/RandomUniformLike")
            let mask = b.add1(OpType.floor, [b.add1(OpType.add, [keep, u], name: path + "/Add")], name: path + "/Floor")
            return b.add1(OpType.mul, [b.add1(OpType.div, [x, keep], name: path + "/Div"), mask], name: path + "/Mul")
        }

        /// BatchNorm2d in train mode (PyTorch's defaults: eps 1e-5, momentum 0.1 = ONNX momentum 0.9),
        /// with the running-statistics outputs a training session writes back.
        func batchNormTraining(_ x: String, _ name: String, _ c: Int) -> String {
            let scale = param("\(name).weight", Tensor([Float](repeating: 1, count: c), shape: [c]))
            let bias = param("\(name).bias", Tensor(zeros: .float, shape: [c]))
            let mean = param("\(name).running_mean", Tensor(zeros: .float, shape: [c]))
            let variance = param("\(name).running_var", Tensor([Float](repeating: 1, count: c), shape: [c]))
            return builder.add(OpType.batchNormalization, [x, scale, bias, mean, variance],
                               attributes: ["epsilon": .float(1e-5), "momentum": .float(0.9), "training_mode": .int(1)],
                               outputs: 3, name: "/" + name.replacingOccurrences(of: ".", with: "/") + "/BatchNormalization")[0]
        }

        /// Shared small constants (one initializer per distinct value).
        func scalar(_ v: Float, _ hint: String) -> String {
            let key = "f\(v.bitPattern)"
            if let n = constants[key] { return n }
            let n = builder.scalar(v, name: hint)
            constants[key] = n
            return n
        }

        func int64s(_ v: [Int], _ hint: String) -> String {
            let key = "i\(v)"
            if let n = constants[key] { return n }
            let n = builder.int64s(v, name: hint)
            constants[key] = n
            return n
        }

        func param(_ name: String, _ t: Tensor) -> String {
            builder.setParameter(name, t)
            return name
        }

        func normal(_ shape: [Int], rng: inout Normal) -> Tensor {
            let t = Tensor(uninitialized: .float, shape: shape)
            let p = t.pointer(Float.self)
            for i in 0..<t.count { p[i] = rng.next() * std }
            return t
        }

        func conv(_ x: String, _ name: String, inC: Int, outC: Int, kernel: Int, stride: Int, pad: Int, groups: Int = 1,
                  bias: Bool = true, rng: inout Normal, output: String? = nil) -> String {
            let wname = param("\(name).weight", normal([outC, inC / groups, kernel, kernel], rng: &rng))
            let inputs = bias ? [x, wname, param("\(name).bias", Tensor(zeros: .float, shape: [outC]))] : [x, wname]
            let attrs: [String: Attribute] = ["kernel_shape": .ints([kernel, kernel]), "strides": .ints([stride, stride]),
                                              "pads": .ints([pad, pad, pad, pad]), "group": .int(groups),
                                              "dilations": .ints([1, 1])]
            let nodeName = "/" + name.replacingOccurrences(of: ".", with: "/") + "/Conv"
            if let output {
                builder.appendNode(Node(name: nodeName, opType: OpType.conv, inputs: inputs, outputs: [output],
                                        attributes: attrs))
                return output
            }
            return builder.add1(OpType.conv, inputs, attributes: attrs, name: nodeName)
        }

        func linear(_ x: String, _ name: String, inF: Int, outF: Int, rng: inout Normal) -> String {
            // PyTorch weight [out, in] drawn in that order (stored transposed as [in, out]).
            linear(x, name, weight: normal([outF, inF], rng: &rng), inF: inF, outF: outF)
        }

        func layerNorm(_ x: String, _ name: String, _ c: Int) -> String {
            let scale = param("\(name).weight", Tensor([Float](repeating: 1, count: c), shape: [c]))
            let bias = param("\(name).bias", Tensor(zeros: .float, shape: [c]))
            return builder.add1(OpType.layerNormalization, [x, scale, bias], attributes: ["axis": .int(-1), "epsilon": .float(1e-5)],
                                name: "/" + name.replacingOccurrences(of: ".", with: "/") + "/LayerNormalization")
        }

        /// [B, C, H, W] → [B, H·W, C] (flatten(2).transpose(1, 2)).
        func tokens(_ x: String, _ scope: String) -> String {
            let path = "/" + scope.replacingOccurrences(of: ".", with: "/")
            let flat = builder.add1(OpType.reshape, [x, int64s([0, 0, -1], "flatten")], name: path + "/Flatten")
            return builder.add1(OpType.transpose, [flat], attributes: ["perm": .ints([0, 2, 1])], name: path + "/Transpose")
        }

        /// [B, H·W, C] → [B, C, H, W] given the Reshape target [0, 0, H, W].
        func image(_ x: String, _ toImage: String, _ scope: String) -> String {
            let path = "/" + scope.replacingOccurrences(of: ".", with: "/")
            let t = builder.add1(OpType.transpose, [x], attributes: ["perm": .ints([0, 2, 1])], name: path + "/ToImageTranspose")
            return builder.add1(OpType.reshape, [t, toImage], name: path + "/ToImage")
        }

        /// One SegformerLayer: pre-norm efficient self-attention and Mix-FFN, both residual.
        func block(_ x: String, _ p: String, channels c: Int, heads: Int, sr: Int, mlp hidden: Int, toImage: String,
                   rng: inout Normal) -> String {
            let b = builder, path = "/" + p.replacingOccurrences(of: ".", with: "/")
            let hd = c / heads
            let normed = layerNorm(x, "\(p).layernorm_before", c)
            let a = "\(p).attention"
            // Draw in HF's module order (q, k, v, o, then the sequence reduction); the stream is not
            // PyTorch's, so this only keeps the seed → weights mapping stable and readable.
            let q = linear(normed, "\(a).q_proj", inF: c, outF: c, rng: &rng)
            var kvIn = normed
            let kW = normal([c, c], rng: &rng), vW = normal([c, c], rng: &rng), oW = normal([c, c], rng: &rng)
            if sr > 1 {
                let img = image(normed, toImage, "\(a).sequence_reduction")
                let red = conv(img, "\(a).sequence_reduction.sequence_reduction", inC: c, outC: c, kernel: sr, stride: sr,
                               pad: 0, rng: &rng)
                kvIn = layerNorm(tokens(red, "\(a).sequence_reduction"), "\(a).sequence_reduction.layer_norm", c)
            }
            let k = linear(kvIn, "\(a).k_proj", weight: kW, inF: c, outF: c)
            let v = linear(kvIn, "\(a).v_proj", weight: vW, inF: c, outF: c)
            let headsShape = int64s([0, 0, heads, hd], "heads_shape")
            let qh = b.add1(OpType.transpose, [b.add1(OpType.reshape, [q, headsShape])], attributes: ["perm": .ints([0, 2, 1, 3])])
            let kt = b.add1(OpType.transpose, [b.add1(OpType.reshape, [k, headsShape])], attributes: ["perm": .ints([0, 2, 3, 1])])
            let vh = b.add1(OpType.transpose, [b.add1(OpType.reshape, [v, headsShape])], attributes: ["perm": .ints([0, 2, 1, 3])])
            let scores = b.add1(OpType.mul, [b.add1(OpType.matMul, [qh, kt], name: path + "/attention/MatMul"),
                                        scalar(Float(1 / Double(hd).squareRoot()), "scaling")])
            let r = regularisation
            let probs = dropout(b.add1(OpType.softmax, [scores], attributes: ["axis": .int(-1)], name: path + "/attention/Softmax"),
                                r?.attention ?? 0, "\(a).dropout")
            let ctx = b.add1(OpType.matMul, [probs, vh], name: path + "/attention/MatMul_1")
            let merged = b.add1(OpType.reshape, [b.add1(OpType.transpose, [ctx], attributes: ["perm": .ints([0, 2, 1, 3])]),
                                            int64s([0, 0, c], "merge_shape")])
            // Drop-path rate of this block: linear from 0 to drop_path_rate over all blocks.
            let blockIndex = blocksEmitted
            blocksEmitted += 1
            let rate = r.map { $0.blocks > 1 ? $0.dropPath * Double(blockIndex) / Double($0.blocks - 1) : 0 } ?? 0
            let attn = dropPath(dropout(linear(merged, "\(a).o_proj", weight: oW, inF: c, outF: c), r?.hidden ?? 0,
                                        "\(p).hidden_dropout"), rate, "\(p).drop_path")
            let h1 = b.add1(OpType.add, [attn, x], name: path + "/Add")

            let normed2 = layerNorm(h1, "\(p).layernorm_after", c)
            let fc1 = linear(normed2, "\(p).mlp.fc1", inF: c, outF: hidden, rng: &rng)
            let dw = conv(image(fc1, toImage, "\(p).mlp.dwconv"), "\(p).mlp.dwconv.dwconv", inC: hidden, outC: hidden,
                          kernel: 3, stride: 1, pad: 1, groups: hidden, rng: &rng)
            let g = dropout(gelu(tokens(dw, "\(p).mlp.dwconv"), "\(p).mlp"), r?.hidden ?? 0, "\(p).mlp.dropout")
            let fc2 = dropout(linear(g, "\(p).mlp.fc2", inF: hidden, outF: c, rng: &rng), r?.hidden ?? 0, "\(p).mlp.dropout_1")
            return b.add1(OpType.add, [dropPath(fc2, rate, "\(p).drop_path_1"), h1], name: path + "/Add_1")
        }

        /// Linear with a weight already drawn ([out, in] PyTorch layout), stored transposed as [in, out].
        func linear(_ x: String, _ name: String, weight wt: Tensor, inF: Int, outF: Int, output: String? = nil) -> String {
            precondition(wt.shape == [outF, inF], "\(name): weight \(wt.shape), expected [\(outF), \(inF)]")
            let wname = param("\(name).weight", SegformerBuilder.transposed2D(wt))
            let bname = param("\(name).bias", Tensor(zeros: .float, shape: [outF]))
            let path = "/" + name.replacingOccurrences(of: ".", with: "/")
            let mm = builder.add1(OpType.matMul, [x, wname], name: path + "/MatMul")
            if let output {
                builder.appendNode(Node(name: path + "/Add", opType: OpType.add, inputs: [mm, bname], outputs: [output]))
                return output
            }
            return builder.add1(OpType.add, [mm, bname], name: path + "/Add")
        }

        /// Exact GELU as PyTorch exports it: x · 0.5 · (1 + erf(x / √2)).
        func gelu(_ x: String, _ scope: String) -> String {
            let b = builder, path = "/" + scope.replacingOccurrences(of: ".", with: "/") + "/act"
            let e = b.add1(OpType.erf, [b.add1(OpType.div, [x, scalar(Float(2).squareRoot(), "sqrt2")], name: path + "/Div")],
                           name: path + "/Erf")
            let one = b.add1(OpType.add, [e, scalar(1, "one")], name: path + "/Add")
            return b.add1(OpType.mul, [b.add1(OpType.mul, [x, one], name: path + "/Mul"), scalar(0.5, "half")],
                          name: path + "/Mul_1")
        }
    }
}

extension GraphBuilder {
    /// Adds an initializer under an exact name (parameters keep their HF names).
    func setParameter(_ name: String, _ tensor: Tensor) {
        var g = graph
        g.setInitializer(name, tensor)
        replaceGraph(g)
    }

    func appendNode(_ node: Node) {
        var g = graph
        g.nodes.append(node)
        replaceGraph(g)
    }
}

// MARK: - Loading pretrained weights

extension SegformerBuilder {
    /// Copies the encoder (`segformer.*` parameters) of an ONNX export of SegformerForImageClassification
    /// or SegformerForSemanticSegmentation (e.g. nvidia/mit-b0) into a built model. Returns how many
    /// tensors were filled; throws, naming the tensor, when the encoder does not fit the variant.
    @discardableResult
    public static func loadEncoder(from source: Model, into target: inout Model) throws -> Int {
        try loadParameters(from: source, into: &target, scopes: ["segformer."])
    }

    /// Copies every parameter under `scopes` (HF module-path prefixes) from `source` into `target`. Every
    /// target parameter in scope must be found with the same shape, and every source parameter in scope
    /// must exist in the target.
    ///
    /// Source names are recognised as exporters write them: initializers named by module path
    /// (`m.segformer.stages.0.…weight`, any wrapper prefix), Linear weights as anonymous MatMul operands
    /// (`onnx::MatMul_123`, matched by the consuming node's name `/m/segformer/…/q_proj/MatMul`), Identity
    /// aliases of merged initializers, and the transformers < 5 names (`segformer.encoder.block.0.0.
    /// attention.self.query`, …), translated to today's.
    @discardableResult
    public static func loadParameters(from source: Model, into target: inout Model, scopes: [String]) throws -> Int {
        let found = try sourceParameters(source.graph, scopes: scopes)
        let wanted = target.graph.initializers.keys.filter { n in scopes.contains { n.hasPrefix($0) } }.sorted()
        guard !wanted.isEmpty else { throw SegFormerError.invalid("target model has no parameters under \(scopes)") }
        guard !found.isEmpty else {
            throw SegFormerError.invalid("source model has no parameters under \(scopes) (is it a SegFormer export?)")
        }
        var missing: [String] = []
        var filled: [(String, Tensor)] = []
        for name in wanted {
            let have = target.graph.initializers[name]!
            guard let src = found[name] else { missing.append(name); continue }
            var t = src.tensor
            if t.shape != have.shape, src.layoutUnknown, t.shape.count == 2, t.shape.reversed() == have.shape {
                t = transposed2D(t)
            }
            guard t.shape == have.shape else {
                throw SegFormerError.invalid("pretrained weights do not fit this model: '\(name)' has shape \(t.shape) in the source, \(have.shape) here")
            }
            guard t.dataType == .float else {
                throw SegFormerError.unsupported("pretrained weight '\(name)' has element type \(t.dataType), expected float")
            }
            filled.append((name, t))
        }
        guard missing.isEmpty else {
            throw SegFormerError.invalid("pretrained weights do not fit this model: \(missing.count) of \(wanted.count) parameters missing in the source, e.g. \(missing.prefix(3).joined(separator: ", "))")
        }
        let extra = found.keys.filter { target.graph.initializers[$0] == nil }.sorted()
        guard extra.isEmpty else {
            throw SegFormerError.invalid("pretrained weights do not fit this model: the source has \(extra.count) parameters this variant lacks, e.g. \(extra.prefix(3).joined(separator: ", "))")
        }
        for (name, t) in filled { target.graph.setInitializer(name, t) }
        return filled.count
    }

    struct SourceParameter {
        var tensor: Tensor
        /// True when nothing says whether a 2-D weight is PyTorch's [out, in] or the MatMul [in, out].
        var layoutUnknown: Bool
    }

    /// HF parameter name (today's naming) → tensor, for every parameter under `scopes` found in `graph`.
    static func sourceParameters(_ graph: Graph, scopes: [String]) throws -> [String: SourceParameter] {
        // Follow Identity chains back to initializers (exporters tie equal initializers that way).
        var alias: [String: String] = [:]
        for n in graph.nodes where n.opType == OpType.identity && n.inputs.count == 1 && n.outputs.count == 1 {
            alias[n.outputs[0]] = n.inputs[0]
        }
        func resolve(_ v: String) -> String? {
            var v = v, steps = 0
            while graph.initializers[v] == nil, let a = alias[v], steps < 64 { v = a; steps += 1 }
            return graph.initializers[v] == nil ? nil : v
        }
        var out: [String: SourceParameter] = [:]
        func record(_ path: String, _ tensor: Tensor, layoutUnknown: Bool) throws {
            // Only module parameters (`….weight`, `….bias`) and BatchNorm running statistics (training-mode
            // exports keep them), not exporter-made names such as `…weight_bias`.
            guard let key = parameterKey(path, scopes: scopes),
                  [".weight", ".bias", ".running_mean", ".running_var"].contains(where: { key.hasSuffix($0) }) else { return }
            if let prev = out[key], !(prev.tensor.shape == tensor.shape && prev.tensor.bitwiseEqual(tensor)) {
                throw SegFormerError.invalid("source model has two different tensors for parameter '\(key)'")
            }
            out[key] = SourceParameter(tensor: tensor, layoutUnknown: layoutUnknown)
        }
        // Values named by module path: initializers and Identity outputs.
        for (name, t) in graph.initializers where t.dataType.isFloatingPoint {
            // Training-mode exports (no constant folding) keep Linear weights in PyTorch's [out, in]
            // layout and transpose them in the graph.
            if t.shape.count == 2, graph.nodes.contains(where: { $0.opType == OpType.transpose && $0.inputs.first == name }) {
                try record(name, transposed2D(t), layoutUnknown: false)
                continue
            }
            try record(name, t, layoutUnknown: t.shape.count == 2 && !consumedAsMatMulWeight(name, graph))
        }
        for (out, _) in alias { if let src = resolve(out) {
            let t = graph.initializers[src]!
            if t.dataType.isFloatingPoint { try record(out, t, layoutUnknown: t.shape.count == 2) }
        } }
        // Linear weights: the right operand of a MatMul named after its module (TorchScript), or else
        // named after the bias the MatMul's output is added to (dynamo names nodes `node_MatMul_6`).
        var consumers: [String: [Int]] = [:]
        for (i, n) in graph.nodes.enumerated() { for v in n.inputs { consumers[v, default: []].append(i) } }
        for n in graph.nodes where n.opType == OpType.matMul && n.inputs.count == 2 && n.outputs.count == 1 {
            guard let src = resolve(n.inputs[1]), let t = graph.initializers[src], t.dataType.isFloatingPoint,
                  t.shape.count == 2 else { continue }
            var path = n.name.replacingOccurrences(of: "/", with: ".")
            while path.hasPrefix(".") { path.removeFirst() }
            if path.hasSuffix(".MatMul"), parameterKey(path, scopes: scopes) != nil {
                path.removeLast(".MatMul".count)
                try record(path + ".weight", t, layoutUnknown: false)
                continue
            }
            for c in consumers[n.outputs[0]] ?? [] where graph.nodes[c].opType == OpType.add {
                let add = graph.nodes[c]
                guard let other = add.inputs.first(where: { $0 != n.outputs[0] }), let bias = resolve(other) else { continue }
                // The bias's own name, or the Identity output that names it.
                let biasName = [other, bias].first { parameterKey($0, scopes: scopes)?.hasSuffix(".bias") == true }
                if let biasName {
                    try record(String(biasName.dropLast(".bias".count)) + ".weight", t, layoutUnknown: false)
                }
            }
        }
        // Conv weights and biases folded by the exporter (`onnx::Conv_1775`, dynamo's `…weight_bias`):
        // named after the Conv node (TorchScript) or after the Conv's named weight.
        for n in graph.nodes where n.opType == OpType.conv && n.inputs.count >= 2 {
            var path = n.name.replacingOccurrences(of: "/", with: ".")
            while path.hasPrefix(".") { path.removeFirst() }
            var module: String?
            if path.hasSuffix(".Conv"), parameterKey(path, scopes: scopes) != nil {
                module = String(path.dropLast(".Conv".count))
            } else if let k = parameterKey(n.inputs[1], scopes: scopes), k.hasSuffix(".weight") {
                module = String(k.dropLast(".weight".count))
            }
            guard let module else { continue }
            for (i, suffix) in [(1, ".weight"), (2, ".bias")] where i < n.inputs.count {
                if let src = resolve(n.inputs[i]), let t = graph.initializers[src], t.dataType.isFloatingPoint {
                    try record(module + suffix, t, layoutUnknown: false)
                }
            }
        }
        return out
    }

    static func consumedAsMatMulWeight(_ name: String, _ graph: Graph) -> Bool {
        graph.nodes.contains { $0.opType == OpType.matMul && $0.inputs.count == 2 && $0.inputs[1] == name }
    }

    /// The HF parameter name inside a module path with any wrapper prefix (`m.segformer.…` → `segformer.…`),
    /// translated from transformers < 5 naming; nil outside `scopes`.
    static func parameterKey(_ path: String, scopes: [String]) -> String? {
        var start: String.Index?
        for scope in scopes {
            var search = path.startIndex..<path.endIndex
            while let r = path.range(of: scope, range: search) {
                if r.lowerBound == path.startIndex || path[path.index(before: r.lowerBound)] == "." {
                    if start == nil || r.lowerBound < start! { start = r.lowerBound }
                    break
                }
                search = r.upperBound..<path.endIndex
            }
        }
        let key = start.map { String(path[$0...]) }
        guard let k = key else { return nil }
        let translated = HFParameterNames.current(k)
        return scopes.contains { translated.hasPrefix($0) } ? translated : nil
    }

    static func transposed2D(_ t: Tensor) -> Tensor {
        let r = t.shape[0], c = t.shape[1]
        let out = Tensor(uninitialized: .float, shape: [c, r])
        let s = t.pointer(Float.self), d = out.pointer(Float.self)
        for i in 0..<r { for j in 0..<c { d[j * r + i] = s[i * c + j] } }
        return out
    }
}
