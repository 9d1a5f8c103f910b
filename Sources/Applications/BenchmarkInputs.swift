import GraphIR
import Runtime
import SegformerModels
import SegmentationData
import Training

/// Inputs for timing a model when no data is at hand (`segformer bench`).
public enum BenchmarkInputs {
    /// Binds a declared input shape: symbolic dims become batch (axis 0), height (axis rank−2) and
    /// width (axis rank−1); known dims stay.
    public static func shape(of info: ValueInfo, batch: Int, height: Int, width: Int) throws -> [Int] {
        guard let dims = info.type.shape else {
            throw SegFormerError.invalid("input '\(info.name)' has no declared shape; cannot invent one")
        }
        return dims.enumerated().map { axis, d in
            if let v = d.value { return v }
            if axis == 0 { return batch }
            if axis == dims.count - 2 { return height }
            if axis == dims.count - 1 { return width }
            return 1
        }
    }

    /// Random values for every input of `session`, in its input order.
    public static func randomFeeds(for session: Session, batch: Int, height: Int, width: Int) throws -> [(ValueInfo, Tensor)] {
        try session.inputs.map { info in
            (info, try Benchmark.randomTensor(info.type.dataType, shape: shape(of: info, batch: batch, height: height, width: width)))
        }
    }

    /// A random training batch for `training`: pixel values of its input's bound shape and labels
    /// over the model's classes (the channel count of its logits; an error names the output when the
    /// graph leaves it unknown), one pixel in ten set to `ignoreIndex`. Seeded, so every run times the
    /// same batch.
    public static func randomBatch(for training: TrainingSession, batch: Int, height: Int, width: Int,
                                   ignoreIndex: Int = 255) throws -> (batch: SegmentationBatch, classes: Int) {
        guard let input = training.session.inputs.first(where: { $0.name == training.pixelValuesName }) else {
            throw SegFormerError.invalid("the training graph has no input '\(training.pixelValuesName)'")
        }
        let pixelShape = try shape(of: input, batch: batch, height: height, width: width)
        guard pixelShape.count == 4 else {
            throw SegFormerError.invalid("input '\(input.name)' is \(pixelShape); expected pixel values N×3×H×W")
        }
        let classes = try SegmentationModel.classCount(of: training.model)
        let pixels = try Benchmark.randomTensor(.float, shape: pixelShape)
        let labels = randomLabels(shape: [pixelShape[0], pixelShape[2], pixelShape[3]], classes: classes, ignoreIndex: ignoreIndex)
        return (SegmentationBatch(pixelValues: pixels, labels: labels), classes)
    }

    /// int64 labels uniform over 0..<classes from a fixed LCG, every tenth draw on average `ignoreIndex`.
    static func randomLabels(shape: [Int], classes: Int, ignoreIndex: Int) -> Tensor {
        let labels = Tensor(uninitialized: .int64, shape: shape)
        var state: UInt64 = 12345
        let lp = labels.pointer(Int64.self)
        for i in 0..<labels.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let r = Int64(state >> 33)
            lp[i] = r % 10 == 0 ? Int64(ignoreIndex) : r % Int64(classes)
        }
        return labels
    }
}
