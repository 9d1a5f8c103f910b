import Foundation
import GraphIR

/// The HuggingFace `config.json` that travels with a trained segmentation model.
public enum ConfigJSON {
    /// Writes num_labels, id2label, label2id and the loss's ignore index. Repeated names (ADE20K has
    /// some, e.g. "screen") map to their first id in label2id.
    public static func write(numLabels: Int, id2label: [Int: String], ignoreIndex: Int = 255, to path: String) throws {
        try write(labelFields(numLabels: numLabels, id2label: id2label, ignoreIndex: ignoreIndex), to: path)
    }

    static func labelFields(numLabels: Int, id2label: [Int: String], ignoreIndex: Int = 255) -> [String: Any] {
        let names = id2label.isEmpty ? Dictionary(uniqueKeysWithValues: (0..<numLabels).map { ($0, "class_\($0)") }) : id2label
        return [
            "num_labels": numLabels,
            "id2label": Dictionary(uniqueKeysWithValues: names.map { (String($0.key), $0.value) }),
            "label2id": Dictionary(names.sorted { $0.key < $1.key }.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first }),
            "semantic_loss_ignore_index": ignoreIndex,
        ]
    }

    static func write(_ config: [String: Any], to path: String) throws {
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try ONNXExporter.writeAtomically([UInt8](json), to: path)
    }
}
