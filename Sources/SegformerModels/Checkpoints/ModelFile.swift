import Foundation
import GraphIR
import SegmentationData

/// Where a command or an app gets its model: an `.onnx` file, or a HuggingFace checkpoint folder
/// (config.json + model.safetensors / pytorch_model.bin) built into the same kind of graph.
public enum ModelFile {
    /// The model at `path`: a folder is read as a HF checkpoint folder, anything else as ONNX.
    ///
    /// - Throws: what `HFCheckpointFolder` or `ONNXImporter.load` throw, naming the file and tensor.
    public static func load(_ path: String) throws -> Model {
        HFCheckpointFolder.isFolder(path) ? try HFCheckpointFolder(path: path).loadModel() : try ONNXImporter.load(contentsOf: path)
    }

    /// The model at `path` (as `load`) to run for predictions: a training-form graph (`segformer init`'s
    /// default, a training-mode export) becomes its inference form (`Passes.inferenceForm`: BatchNorm on
    /// its running statistics, no dropout or drop-path, as PyTorch's `model.eval()`), so results are
    /// deterministic and equal those of the same weights in an eval graph. `notice` is told once when
    /// that happens (by default one line on stderr).
    public static func loadForInference(_ path: String, notice: (String) -> Void = printNotice) throws -> Model {
        var model = try load(path)
        guard try Passes.isTrainingForm(model.graph, opset: model.opset) else { return model }
        model.graph = try Passes.inferenceForm(model.graph, opset: model.opset)
        notice("\(path) is a training-form graph (BatchNorm on batch statistics, dropout, drop-path): running its inference form (running statistics, no dropout), as PyTorch's model.eval()")
        return model
    }

    /// Writes `note: MESSAGE` on stderr.
    public static func printNotice(_ message: String) {
        FileHandle.standardError.write(Data(("note: " + message + "\n").utf8))
    }

    /// The image processor and class names that travel with the model at `path`: a folder's
    /// preprocessor_config.json (required) and config.json id2label; nil for an ONNX file.
    public static func companions(_ path: String) throws -> (processor: SegformerImageProcessor, id2label: [Int: String])? {
        guard HFCheckpointFolder.isFolder(path) else { return nil }
        let folder = try HFCheckpointFolder(path: path)
        return (try folder.imageProcessor(), folder.config.id2label)
    }

    /// The class names a checkpoint folder's config.json gives (id2label); empty for an ONNX file.
    public static func classNames(_ path: String) throws -> [Int: String] {
        HFCheckpointFolder.isFolder(path) ? try HFCheckpointFolder(path: path).config.id2label : [:]
    }

    /// The SegFormer configuration of a model, for writing it as a HF checkpoint: a folder's own
    /// config.json; for an ONNX graph the sizes read off its parameters (stages, hidden sizes, depths,
    /// sequence-reduction ratios, patch sizes, MLP ratios, decoder width, labels) and the rest (strides,
    /// attention heads, id2label) from `hint` — the model's config.json when given — else MiT's.
    public static func segmentationConfig(of model: Model, hint: SegformerConfig?) throws -> SegformerConfig {
        let found = try SegformerBuilder.sourceParameters(model.graph, scopes: ["segformer.", "decode_head."])
        func shape(_ key: String) -> [Int]? { found[key]?.tensor.shape }
        var hidden: [Int] = [], depths: [Int] = [], srs: [Int] = [], patches: [Int] = [], mlps: [Int] = []
        while let w = shape("segformer.stages.\(hidden.count).patch_embeddings.proj.weight"), w.count == 4 {
            let s = hidden.count
            hidden.append(w[0])
            patches.append(w[2])
            var depth = 0
            while shape("segformer.stages.\(s).blocks.\(depth).layernorm_before.weight") != nil { depth += 1 }
            depths.append(depth)
            srs.append(shape("segformer.stages.\(s).blocks.0.attention.sequence_reduction.sequence_reduction.weight")?[2] ?? 1)
            mlps.append((shape("segformer.stages.\(s).blocks.0.mlp.dwconv.dwconv.weight")?[0] ?? 0) / max(1, w[0]))
        }
        guard !hidden.isEmpty, let fuse = shape("decode_head.linear_fuse.weight"), let cls = shape("decode_head.classifier.weight"),
              let channels = shape("segformer.stages.0.patch_embeddings.proj.weight")?[1] else {
            throw SegFormerError.invalid("not a SegformerForSemanticSegmentation graph: its encoder stages or decode head parameters were not found")
        }
        let n = hidden.count
        let base = hint ?? SegformerConfig(hiddenSizes: hidden, depths: depths, decoderHiddenSize: fuse[0], numLabels: cls[0])
        guard base.strides.count == n, base.numAttentionHeads.count == n else {
            throw SegFormerError.invalid("the model has \(n) stages; give its config.json (strides and attention heads cannot be read off the weights)")
        }
        var config = SegformerConfig(hiddenSizes: hidden, depths: depths, numAttentionHeads: base.numAttentionHeads, srRatios: srs,
                                     patchSizes: patches, strides: base.strides, mlpRatios: mlps, decoderHiddenSize: fuse[0],
                                     numLabels: cls[0], id2label: base.id2label, numChannels: channels)
        config.initializerRange = base.initializerRange
        if config.id2label.count != config.numLabels { config.id2label = [:] }
        try config.validate()
        return config
    }
}
