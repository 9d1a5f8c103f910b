import Foundation

/// SegFormer parameter names in HuggingFace's two spellings, translated both ways.
///
/// transformers 5 renamed the modules (`transformers/conversion_mapping.py`, entries "SegformerModel" and
/// "SegformerForSemanticSegmentation"): today's names (`segformer.stages.0.blocks.0.attention.q_proj.weight`,
/// `decode_head.linear_projections.0.proj.weight`) are what this package's graphs carry; the legacy names
/// (`segformer.encoder.block.0.0.attention.self.query.weight`, `decode_head.linear_c.0.proj.weight`) are
/// what the hub's checkpoints hold and what transformers 5's own `save_pretrained` still writes.
public enum HFParameterNames {
    /// Module renames inside a name (legacy → today), in transformers' order. The per-stage prefixes
    /// (`segformer.encoder.block.{i}.` → `segformer.stages.{i}.blocks.` …) are handled apart.
    static let renames: [(legacy: String, current: String)] = [
        ("attention.self.query", "attention.q_proj"), ("attention.self.key", "attention.k_proj"),
        ("attention.self.value", "attention.v_proj"),
        ("attention.self.sr", "attention.sequence_reduction.sequence_reduction"),
        ("attention.self.layer_norm", "attention.sequence_reduction.layer_norm"),
        ("attention.output.dense", "attention.o_proj"), ("mlp.dense1", "mlp.fc1"), ("mlp.dense2", "mlp.fc2"),
        ("layer_norm_1", "layernorm_before"), ("layer_norm_2", "layernorm_after"),
        ("decode_head.linear_c", "decode_head.linear_projections"),
    ]

    /// Per-stage modules: legacy `segformer.encoder.{legacy}.{i}.` ↔ today's `segformer.stages.{i}.{current}.`.
    static let stageModules: [(legacy: String, current: String)] = [
        ("patch_embeddings", "patch_embeddings"), ("block", "blocks"), ("layer_norm", "layer_norm"),
    ]

    /// Today's name for `name` (names already current are returned unchanged).
    public static func current(_ name: String) -> String {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count >= 4, parts[0] == "segformer", parts[1] == "encoder",
           let module = stageModules.first(where: { $0.legacy == parts[2] }), Int(parts[3]) != nil {
            parts = ["segformer", "stages", parts[3], module.current] + parts[4...]
        }
        return renamed(parts.joined(separator: "."), from: \.legacy, to: \.current)
    }

    /// The legacy (transformers < 5, hub) name for today's `name`.
    public static func legacy(_ name: String) -> String {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count >= 4, parts[0] == "segformer", parts[1] == "stages", Int(parts[2]) != nil,
           let module = stageModules.first(where: { $0.current == parts[3] }) {
            parts = ["segformer", "encoder", module.legacy, parts[2]] + parts[4...]
        }
        return renamed(parts.joined(separator: "."), from: \.current, to: \.legacy)
    }

    /// Replaces whole dot-separated module paths only (`layer_norm_1` never matches inside another word).
    static func renamed(_ name: String, from: KeyPath<(legacy: String, current: String), String>,
                        to: KeyPath<(legacy: String, current: String), String>) -> String {
        var out = "." + name + "."
        for r in renames {
            out = out.replacingOccurrences(of: "." + r[keyPath: from] + ".", with: "." + r[keyPath: to] + ".")
        }
        return String(out.dropFirst().dropLast())
    }
}
