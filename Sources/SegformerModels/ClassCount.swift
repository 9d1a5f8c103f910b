import GraphIR
import Runtime

/// What a segmentation model predicts, read from the graph rather than assumed.
public enum SegmentationModel {
    /// The number of classes: the channel dimension of the first output (logits N×C×h×w), as type
    /// inference sees it. Throws, naming the output, when the graph leaves it unknown.
    public static func classCount(of model: Model) throws -> Int {
        guard let logits = model.graph.outputs.first?.name else { throw SegFormerError.invalid("the model has no outputs") }
        let types = try TypeInference.infer(model.graph, opset: model.opset).types
        if let shape = types[logits]?.shape, shape.count != 4 {
            throw SegFormerError.invalid("not a segmentation model: its output '\(logits)' is \(types[logits]!) (rank \(shape.count)); "
                + "a segmentation model outputs logits [batch, classes, height, width] (a classifier's are [batch, classes])")
        }
        guard let c = types[logits]?.shape?.dropFirst().first?.value else {
            throw SegFormerError.invalid("cannot tell the number of classes from output '\(logits)' (its channel dimension is not known)")
        }
        return c
    }
}
