import Foundation
import GraphIR
import Runtime
import SegmentationData

/// A HuggingFace checkpoint folder, as `from_pretrained` reads and `save_pretrained` writes it:
/// `config.json` (the architecture), `model.safetensors` or `pytorch_model.bin` (the weights, with
/// transformers-5 or legacy names) and `preprocessor_config.json` (the image processor).
///
/// Loading builds the graph from config.json with `SegformerBuilder` (eval mode: the decode head's
/// BatchNorm is folded into `linear_fuse`) and fills it from the weights. Every parameter must be found
/// with its shape and every tensor of the file must be used, else one error names the file and tensor.
public struct HFCheckpointFolder {
    public static let configFile = "config.json"
    public static let safetensorsFile = "model.safetensors"
    public static let pickleFile = "pytorch_model.bin"
    public static let preprocessorFile = "preprocessor_config.json"
    /// PyTorch's BatchNorm2d default, which HF's decode head uses.
    static let batchNormEpsilon = 1e-5

    public let path: String
    public let config: SegformerConfig
    public let head: SegformerBuilder.Head
    /// `model.safetensors` when present, else `pytorch_model.bin`.
    public let weightsPath: String

    /// Whether `path` is a folder (a model given as a folder is read as a checkpoint folder).
    public static func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Reads config.json and finds the weights (nothing heavy is read yet).
    ///
    /// - Throws: `SegFormerError.io` naming the missing file, `.invalid` / `.unsupported` naming the
    ///   config field at fault.
    public init(path: String) throws {
        self.path = path
        let configPath = Self.file(path, Self.configFile)
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw SegFormerError.io("\(configPath): missing (a HuggingFace checkpoint folder needs config.json)")
        }
        (config, head) = try Self.readConfig(configPath)
        let candidates = [Self.safetensorsFile, Self.pickleFile].map { Self.file(path, $0) }
        guard let weights = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            if FileManager.default.fileExists(atPath: Self.file(path, Self.safetensorsFile + ".index.json"))
                || FileManager.default.fileExists(atPath: Self.file(path, Self.pickleFile + ".index.json")) {
                throw SegFormerError.unsupported("\(path): sharded checkpoints (*.index.json); merge the shards into one model.safetensors")
            }
            throw SegFormerError.io("\(path): missing model.safetensors or pytorch_model.bin")
        }
        weightsPath = weights
    }

    static func file(_ folder: String, _ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    /// The folder's `preprocessor_config.json` as HF's image processor.
    ///
    /// - Throws: `SegFormerError.io` naming the file when it is missing, `.invalid` for a malformed one.
    public func imageProcessor() throws -> SegformerImageProcessor {
        let p = Self.file(path, Self.preprocessorFile)
        guard FileManager.default.fileExists(atPath: p) else { throw SegFormerError.io("\(p): missing (the folder's image processor settings)") }
        return try SegformerImageProcessor(preprocessorConfigPath: p)
    }

    /// The weights file's tensors under their names as stored.
    public func readWeights() throws -> [String: Tensor] {
        weightsPath.hasSuffix(".bin") ? try TorchCheckpoint.read(contentsOf: weightsPath)
                                      : try Safetensors.read(contentsOf: weightsPath).tensors
    }

    /// The model as an opset-17 graph (symbolic batch, height, width) holding the folder's weights.
    public func loadModel() throws -> Model {
        var model = try SegformerBuilder.build(config: config, head: head)
        try Self.fill(&model, from: readWeights(), file: weightsPath)
        return model
    }

    // MARK: - config.json

    /// The architecture of a HF SegFormer config.json; absent fields take `SegformerConfig`'s defaults
    /// as transformers does.
    public static func readConfig(_ path: String) throws -> (config: SegformerConfig, head: SegformerBuilder.Head) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SegFormerError.io("cannot read \(path): \(error.localizedDescription)")
        }
        do { return try parseConfig(data) } catch let e as SegFormerError { throw e.prefixed(path) }
    }

    static func parseConfig(_ data: Data) throws -> (config: SegformerConfig, head: SegformerBuilder.Head) {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw SegFormerError.invalid("not a JSON object")
        }
        func ints(_ key: String, _ fallback: [Int]) throws -> [Int] {
            guard let v = obj[key], !(v is NSNull) else { return fallback }
            guard let a = v as? [NSNumber], a.allSatisfy({ !$0.isJSONBool && $0.doubleValue == $0.doubleValue.rounded() }) else {
                throw SegFormerError.invalid("\"\(key)\" must be a list of integers")
            }
            return a.map(\.intValue)
        }
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let v = obj[key], !(v is NSNull) else { return fallback }
            guard let n = v as? NSNumber, !n.isJSONBool, n.doubleValue == n.doubleValue.rounded() else {
                throw SegFormerError.invalid("\"\(key)\" must be an integer")
            }
            return n.intValue
        }
        if let type = obj["model_type"] as? String, type != "segformer" {
            throw SegFormerError.unsupported("model_type \"\(type)\" (expected \"segformer\")")
        }
        if let act = obj["hidden_act"] as? String, act != "gelu" {
            throw SegFormerError.unsupported("hidden_act \"\(act)\" (SegFormer uses exact \"gelu\")")
        }
        var head = SegformerBuilder.Head.semanticSegmentation
        if let architectures = obj["architectures"] as? [String], let first = architectures.first {
            guard let h = SegformerBuilder.Head(rawValue: first) else {
                throw SegFormerError.unsupported("architecture \(first) (expected SegformerForSemanticSegmentation or SegformerForImageClassification)")
            }
            head = h
        }
        if head == .semanticSegmentation, let reshape = obj["reshape_last_stage"] as? NSNumber, !reshape.boolValue {
            throw SegFormerError.unsupported("reshape_last_stage false")
        }
        let id2label = try Classification.id2label(configJSON: data)
        let numLabels = id2label.isEmpty ? try int("num_labels", 2) : id2label.count
        guard id2label.isEmpty || Set(id2label.keys) == Set(0..<numLabels) else {
            throw SegFormerError.invalid("id2label keys must be 0…\(numLabels - 1)")
        }
        let hidden = try ints("hidden_sizes", [32, 64, 160, 256])
        if obj["num_encoder_blocks"] != nil, try int("num_encoder_blocks", 4) != hidden.count {
            throw SegFormerError.invalid("num_encoder_blocks \(try int("num_encoder_blocks", 4)) differs from the \(hidden.count) hidden_sizes")
        }
        var config = SegformerConfig(hiddenSizes: hidden, depths: try ints("depths", [2, 2, 2, 2]),
                                     numAttentionHeads: try ints("num_attention_heads", [1, 2, 5, 8]),
                                     srRatios: try ints("sr_ratios", [8, 4, 2, 1]), patchSizes: try ints("patch_sizes", [7, 3, 3, 3]),
                                     strides: try ints("strides", [4, 2, 2, 2]), mlpRatios: try ints("mlp_ratios", [4, 4, 4, 4]),
                                     decoderHiddenSize: try int("decoder_hidden_size", 256), numLabels: numLabels,
                                     id2label: id2label, numChannels: try int("num_channels", 3))
        if let r = obj["initializer_range"] as? NSNumber { config.initializerRange = r.floatValue }
        try config.validate()
        return (config, head)
    }

    /// config.json as transformers writes it for this architecture (eval-mode dropout rates are HF's defaults).
    static func configJSON(_ c: SegformerConfig, head: SegformerBuilder.Head) -> [String: Any] {
        var out = ConfigJSON.labelFields(numLabels: c.numLabels, id2label: c.id2label)
        let fields: [String: Any] = [
            "architectures": [head.rawValue], "model_type": "segformer", "num_channels": c.numChannels,
            "num_encoder_blocks": c.numStages, "hidden_sizes": c.hiddenSizes, "depths": c.depths,
            "num_attention_heads": c.numAttentionHeads, "sr_ratios": c.srRatios, "patch_sizes": c.patchSizes,
            "strides": c.strides, "mlp_ratios": c.mlpRatios, "decoder_hidden_size": c.decoderHiddenSize,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "classifier_dropout_prob": 0.1, "drop_path_rate": 0.1, "initializer_range": Double(c.initializerRange),
            "layer_norm_eps": 1e-6, "reshape_last_stage": true,
        ]
        out.merge(fields) { _, new in new }
        return out
    }

    // MARK: - Weights → graph

    static func isParameter(_ name: String) -> Bool {
        name.hasPrefix("segformer.") || name.hasPrefix("decode_head.") || name.hasPrefix("classifier.")
    }

    /// Fills every parameter of a built `model` from a state dict (either naming). Linear weights are
    /// transposed to the graph's [in, out]; the decode head's BatchNorm is folded into `linear_fuse` when
    /// the graph has none of its own; `num_batches_tracked` is not a parameter.
    static func fill(_ model: inout Model, from state: [String: Tensor], file: String) throws {
        var source: [String: (stored: String, tensor: Tensor)] = [:]
        for (name, t) in state where !name.hasSuffix(".num_batches_tracked") {
            let key = HFParameterNames.current(name)
            if let other = source[key] {
                throw SegFormerError.invalid("\(file): tensors '\(other.stored)' and '\(name)' are both parameter '\(key)'")
            }
            source[key] = (name, t)
        }
        func take(_ key: String) throws -> Tensor? {
            guard let s = source.removeValue(forKey: key) else { return nil }
            guard s.tensor.dataType.isFloatingPoint else {
                throw SegFormerError.invalid("\(file): tensor '\(s.stored)' is \(s.tensor.dataType), expected floating point")
            }
            return s.tensor.dataType == .float ? s.tensor : Tensor(try s.tensor.doubles().map { Float($0) }, shape: s.tensor.shape)
        }
        let graph = model.graph
        var filled: [String: Tensor] = [:]
        let bn = "decode_head.batch_norm.", fuse = "decode_head.linear_fuse."
        if graph.initializers[bn + "weight"] == nil, graph.initializers[fuse + "bias"] != nil,
           source.keys.contains(where: { $0.hasPrefix(bn) }) {
            var parts: [String: Tensor] = [:]
            for p in ["weight", "bias", "running_mean", "running_var"] {
                guard let t = try take(bn + p) else { throw SegFormerError.invalid("\(file): tensor '\(bn + p)' missing (the decode head's BatchNorm)") }
                parts[p] = t
            }
            guard let w = try take(fuse + "weight") else { throw SegFormerError.invalid("\(file): tensor '\(fuse)weight' missing") }
            let d = w.shape.first ?? 0
            for (p, t) in parts where t.shape != [d] {
                throw SegFormerError.invalid("\(file): tensor '\(bn + p)' has shape \(t.shape), linear_fuse has \(d) output channels")
            }
            (filled[fuse + "weight"], filled[fuse + "bias"]) = foldBatchNorm(weight: w, parts)
        }
        var missing: [String] = []
        for name in graph.initializers.keys.sorted() where isParameter(name) && filled[name] == nil {
            let want = graph.initializers[name]!
            guard var t = try take(name) else { missing.append(name); continue }
            if SegformerBuilder.consumedAsMatMulWeight(name, graph), t.rank == 2 {
                t = SegformerBuilder.transposed2D(t)   // PyTorch's Linear [out, in] → MatMul [in, out]
            }
            guard t.shape == want.shape else {
                let shown = SegformerBuilder.consumedAsMatMulWeight(name, graph) ? Array(t.shape.reversed()) : t.shape
                let expected = SegformerBuilder.consumedAsMatMulWeight(name, graph) ? Array(want.shape.reversed()) : want.shape
                throw SegFormerError.invalid("\(file): tensor '\(name)' has shape \(shown), config.json makes it \(expected)")
            }
            filled[name] = t
        }
        guard missing.isEmpty else {
            throw SegFormerError.invalid("\(file): tensor '\(missing[0])' missing (legacy name '\(HFParameterNames.legacy(missing[0]))'); \(missing.count) of the model's parameters are not in the file")
        }
        if let extra = source.values.map(\.stored).sorted().first {
            throw SegFormerError.invalid("\(file): unknown tensor '\(extra)' (\(source.count) tensors this config.json has no parameter for)")
        }
        for (name, t) in filled { model.graph.setInitializer(name, t) }
    }

    /// BatchNorm (eval) after a bias-free 1×1 conv, as one biased conv: w' = w·s, b' = β − μ·s with
    /// s = γ / √(σ² + ε), in double.
    static func foldBatchNorm(weight w: Tensor, _ bn: [String: Tensor]) -> (Tensor, Tensor) {
        let d = w.shape[0], per = w.count / max(d, 1)
        let gamma = bn["weight"]!.buffer(Float.self), beta = bn["bias"]!.buffer(Float.self)
        let mean = bn["running_mean"]!.buffer(Float.self), variance = bn["running_var"]!.buffer(Float.self)
        let outW = Tensor(uninitialized: .float, shape: w.shape), outB = Tensor(uninitialized: .float, shape: [d])
        let src = w.pointer(Float.self), dst = outW.pointer(Float.self), bias = outB.pointer(Float.self)
        for o in 0..<d {
            let s = Double(gamma[o]) / (Double(variance[o]) + batchNormEpsilon).squareRoot()
            for i in 0..<per { dst[o * per + i] = Float(Double(src[o * per + i]) * s) }
            bias[o] = Float(Double(beta[o]) - Double(mean[o]) * s)
        }
        return (outW, outB)
    }

    // MARK: - Graph → folder (export-hf)

    /// Writes `model` — any graph whose parameters `SegformerBuilder.loadParameters` recognises (a folder's
    /// model, `segformer init` / `train` output, a PyTorch eval-mode export) — as a checkpoint folder that
    /// `SegformerForSemanticSegmentation.from_pretrained` (or `…ForImageClassification`) loads: config.json,
    /// model.safetensors with the hub's legacy names, preprocessor_config.json.
    ///
    /// Before writing anything, the model is rebuilt from `config` and both graphs are run on one input:
    /// a config that does not describe the model (e.g. wrong head counts) stops here.
    ///
    /// - Throws: `SegFormerError.invalid` when the weights do not fit `config` or the rebuilt model computes
    ///   something else, `.io` when an output file exists (and `overwrite` is off) or cannot be written.
    public static func write(_ source: Model, config: SegformerConfig, head: SegformerBuilder.Head,
                             processor: SegformerImageProcessor, to folder: String, overwrite: Bool) throws {
        let outputs = [configFile, safetensorsFile, preprocessorFile].map { file(folder, $0) }
        for p in outputs { try OutputGuard.requireWritable(p, overwrite: overwrite) }
        var built = try SegformerBuilder.build(config: config, head: head)
        let scopes = head == .semanticSegmentation ? ["segformer.", "decode_head."] : ["segformer.", "classifier."]
        try SegformerBuilder.loadParameters(from: source, into: &built, scopes: scopes)
        try requireSameLogits(source, built)
        let tensors = try legacyStateDict(built)
        let bytes = try Safetensors.encode(tensors)
        let processorJSON = try processor.configJSON()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try ONNXExporter.writeAtomically(bytes, to: outputs[1])
        try ConfigJSON.write(configJSON(config, head: head), to: outputs[0])
        try ONNXExporter.writeAtomically([UInt8](processorJSON), to: outputs[2])
    }

    /// `segformer export-hf`: the model at `path` (a checkpoint folder, or an `.onnx` graph whose sizes
    /// `ModelFile.segmentationConfig` reads off its weights, the rest from `configPath` or the config.json
    /// beside it) written to `folder` by `write`. The processor: `preprocessorPath`, else the one in or
    /// beside the model, else HF's defaults (only for an .onnx model). Returns the config written.
    public static func export(modelAt path: String, to folder: String, configPath: String? = nil,
                              preprocessorPath: String? = nil, overwrite: Bool = false) throws -> SegformerConfig {
        let explicitProcessor = try preprocessorPath.map { try SegformerImageProcessor(preprocessorConfigPath: $0) }
        if isFolder(path) {
            let source = try HFCheckpointFolder(path: path)
            try write(source.loadModel(), config: source.config, head: source.head,
                      processor: explicitProcessor ?? source.imageProcessor(), to: folder, overwrite: overwrite)
            return source.config
        }
        let beside = (path as NSString).deletingLastPathComponent
        func besideModel(_ name: String) -> String? {
            let p = file(beside.isEmpty ? "." : beside, name)
            return FileManager.default.fileExists(atPath: p) ? p : nil
        }
        let hint = try (configPath ?? besideModel(configFile)).map { try readConfig($0).config }
        let processor = try explicitProcessor ?? besideModel(preprocessorFile).map { try SegformerImageProcessor(preprocessorConfigPath: $0) }
            ?? SegformerImageProcessor()
        let model = try ModelFile.load(path)
        let config = try ModelFile.segmentationConfig(of: model, hint: hint)
        try write(model, config: config, head: .semanticSegmentation, processor: processor, to: folder, overwrite: overwrite)
        return config
    }

    /// A built model's parameters as PyTorch holds them: legacy names, Linear weights [out, in], and the
    /// folded decode head split back into a bias-free `linear_fuse` and an identity BatchNorm carrying the bias.
    static func legacyStateDict(_ model: Model) throws -> [String: Tensor] {
        let graph = model.graph
        var out: [String: Tensor] = [:]
        for (name, t) in graph.initializers where isParameter(name) {
            if name == "decode_head.linear_fuse.bias", graph.initializers["decode_head.batch_norm.weight"] == nil {
                let d = t.count, bn = "decode_head.batch_norm."
                out[bn + "weight"] = Tensor([Float](repeating: 1, count: d), shape: [d])
                out[bn + "bias"] = t
                out[bn + "running_mean"] = Tensor(zeros: .float, shape: [d])
                // (x − 0) / √(var + ε) = x exactly in float32 when var = 1 − ε.
                out[bn + "running_var"] = Tensor([Float](repeating: Float(1 - batchNormEpsilon), count: d), shape: [d])
                out[bn + "num_batches_tracked"] = Tensor(scalar: Int64(0))
                continue
            }
            let pytorch = SegformerBuilder.consumedAsMatMulWeight(name, graph) ? SegformerBuilder.transposed2D(t) : t
            out[HFParameterNames.legacy(name)] = pytorch
        }
        return out
    }

    /// Runs both models on one seeded input and requires the same logits (1e-4 relative to their scale).
    static func requireSameLogits(_ a: Model, _ b: Model) throws {
        guard let input = a.graph.inputs.first, let dims = input.type.shape, dims.count == 4 else {
            throw SegFormerError.invalid("the model's first input is not N×C×H×W pixel values")
        }
        let shape = [1, dims[1].value ?? 3, dims[2].value ?? 64, dims[3].value ?? 64]
        var rng = SegformerBuilder.Normal(seed: 7)
        let x = Tensor((0..<Tensor.elementCount(shape)).map { _ in rng.next() }, shape: shape)
        let ya = try Session(model: a).run([input.name: x])[a.graph.outputs[0].name]!
        let yb = try Session(model: b).run([b.graph.inputs[0].name: x])[b.graph.outputs[0].name]!
        let pa = ya.buffer(Float.self), pb = yb.buffer(Float.self)
        let scale = max(1, pa.map { abs($0) }.max() ?? 0)
        let worst = ya.shape == yb.shape ? zip(pa, pb).map { abs($0 - $1) }.max() ?? 0 : .infinity
        guard worst <= 1e-4 * scale else {
            throw SegFormerError.invalid("the config does not describe this model: rebuilt from it, logits differ by \(worst) (shapes \(ya.shape), \(yb.shape)); give the model's config.json with --config")
        }
    }
}
