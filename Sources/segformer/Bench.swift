import ArgumentParser
import Foundation
import GraphIR
import Runtime
import Training
import SegformerModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model's forward pass on random inputs: median and min latency, peak memory.")

    @Argument(help: "The .onnx model file.") var model: String
    @Option(help: "Batch size bound to the first symbolic dimension.") var batch: Int = 1
    @Option(help: "Input height for symbolic spatial dimensions.") var height: Int = 512
    @Option(help: "Input width for symbolic spatial dimensions.") var width: Int = 512
    @Option(help: "Timed iterations.") var iterations: Int = 10
    @Option(help: "Untimed warm-up iterations.") var warmup: Int = 2
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @Flag(help: "Print time spent per op type over the timed runs.") var profile = false
    @Flag(help: "Time one training step instead (HF loss, forward + backward + AdamW) on random inputs and labels.") var train = false

    func run() throws {
        try reportingErrors {
            guard iterations > 0, batch > 0, height > 0, width > 0 else {
                throw SegFormerError.invalid("--iterations, --batch, --height and --width must be positive")
            }
            let m = try ONNXImporter.load(contentsOf: model)
            if train { return try benchTraining(m) }
            let session = try InferenceSession(model: m, options: SessionOptions(threads: threads))
            var feeds: [String: Tensor] = [:]
            for info in session.inputs {
                let shape = try concreteShape(info, batch: batch, height: height, width: width)
                feeds[info.name] = try Benchmark.randomTensor(info.type.dataType, shape: shape)
                print("input \(info.name): \(info.type.dataType) \(shape)")
            }
            print("threads \(session.context.threads), warm-up \(warmup), iterations \(iterations)")
            let result = try Benchmark.measure(warmup: warmup, iterations: iterations, beforeTimed: {
                session.profiling = profile
            }) {
                _ = try session.run(feeds)
            }
            if profile { printProfile(session) }
            print(result)
        }
    }
}

extension Bench {
    /// One optimizer step per iteration: forward + backward of the HF loss, then AdamW.
    func benchTraining(_ m: Model) throws {
        let training = try TrainingSession(model: m, options: TrainingOptions(threads: threads))
        let input = training.session.inputs.first { $0.name == training.pixelValuesName }!
        let shape = try concreteShape(input, batch: batch, height: height, width: width)
        let pixels = try Benchmark.randomTensor(.float, shape: shape)
        let classes = try TypeInference.infer(m.graph, opset: m.opset).types[m.graph.outputs[0].name]?.shape?[1].value ?? 150
        let labels = Tensor(uninitialized: .int64, shape: [shape[0], shape[2], shape[3]])
        var state: UInt64 = 12345
        let lp = labels.pointer(Int64.self)
        for i in 0..<labels.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let r = Int64(state >> 33)
            lp[i] = r % 10 == 0 ? 255 : r % Int64(classes)
        }
        let optimizer = AdamW()
        print("training step: pixel_values \(shape), labels [\(shape[0]), \(shape[2]), \(shape[3])] over \(classes) classes, \(training.parameterNames.count) parameters, threads \(training.session.context.threads)")
        var lastLoss: Float = 0
        let result = try Benchmark.measure(warmup: warmup, iterations: iterations, beforeTimed: {
            training.session.profiling = profile
        }) {
            let (loss, grads) = try training.lossAndGradients(pixelValues: pixels, labels: labels)
            try training.update(with: optimizer, gradients: grads, learningRate: 6e-5)
            lastLoss = loss
        }
        if profile { printProfile(training.session) }
        print("loss after \(optimizer.step) steps: \(lastLoss)")
        print(result)
    }

    func printProfile(_ session: InferenceSession) {
        let total = session.profile.values.reduce(0) { $0 + $1.milliseconds }
        print("time per op type (per run):")
        for (op, p) in session.profile.sorted(by: { $0.value.milliseconds > $1.value.milliseconds }) {
            let perRun = p.milliseconds / Double(iterations)
            let name = op.padding(toLength: max(op.count, 22), withPad: " ", startingAt: 0)
            print("  " + name + String(format: " %8.2f ms  %5.1f%%  %4d calls", perRun, 100 * p.milliseconds / max(total, 1e-9), p.calls / iterations))
        }
    }
}

/// Binds a declared input shape: symbolic dims become batch (axis 0), height (axis rank-2), width
/// (axis rank-1); known dims stay.
func concreteShape(_ info: ValueInfo, batch: Int, height: Int, width: Int) throws -> [Int] {
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
