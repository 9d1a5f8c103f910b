import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels
import Training
import Applications

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model's forward pass on random inputs: median and min latency, peak memory.")

    // Option declarations look like Demo's and the other commands': the options differ, the shape is ArgumentParser's.
    @Argument(help: "The .onnx model file, or a HuggingFace checkpoint folder.") var model: String
    @Option(name: .customLong("batch"), help: "Batch size bound to the first symbolic dimension (default 1; an error on a fixed-batch model).") var batchOption: Int?
    @Option(name: .customLong("height"), help: "Input height for symbolic spatial dimensions (default 512; an error on a fixed-size model).") var heightOption: Int?
    @Option(name: .customLong("width"), help: "Input width for symbolic spatial dimensions (default 512; an error on a fixed-size model).") var widthOption: Int?
    @Option(help: "Timed iterations.") var iterations: Int = 10
    @Option(help: "Untimed warm-up iterations.") var warmup: Int = 2
    @OptionGroup var sessionFlags: SessionFlags
    @Flag(help: "Print time spent per op type, and the costliest nodes, over the timed runs.") var profile = false
    @Flag(help: "Time one training step instead (HF loss, forward + backward + AdamW) on random inputs and labels; also prints what the gradient-graph passes changed, the activation peak of its plan and the largest values live there.") var train = false

    func run() throws {
        try reportingErrors {
            let m = try ModelFile.load(model)
            try InputSizeRequest.check(sizeRequests, against: m.graph.runtimeInputs)
            if train { return try benchTraining(m) }
            let session = try Session(model: m, options: sessionFlags.sessionOptions)
            var feeds: [String: Tensor] = [:]
            for (info, value) in try BenchmarkInputs.randomFeeds(for: session, batch: batch, height: height, width: width) {
                feeds[info.name] = value
                print("input \(info.name): \(value.dataType) \(value.shape)")
            }
            printPasses(session)
            print("threads \(session.context.threads), gemm \(GEMMLibrary.current.rawValue), warm-up \(warmup), iterations \(iterations)")
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
    var batch: Int { batchOption ?? 1 }
    var height: Int { heightOption ?? 512 }
    var width: Int { widthOption ?? 512 }

    /// The sizes given explicitly: they must fit the model's fixed dimensions.
    var sizeRequests: [InputSizeRequest] {
        [(batchOption, "--batch", InputSizeRequest.Axis.batch), (heightOption, "--height", .height), (widthOption, "--width", .width)]
            .compactMap { value, option, axis in value.map { InputSizeRequest(option: option, axes: [axis], value: $0) } }
    }

    /// One training step per iteration (HF loss, forward + backward, AdamW) on a seeded random batch.
    func benchTraining(_ m: Model) throws {
        let training = try TrainingSession(model: m, options: TrainingOptions(threads: sessionFlags.threads,
                                                                                   optimizingPasses: !sessionFlags.noOptimize))
        let (inputs, classes) = try BenchmarkInputs.randomBatch(for: training, batch: batch, height: height, width: width)
        let optimizer = AdamW()
        print("training step: pixel_values \(inputs.pixelValues.shape), labels \(inputs.labels.shape) over \(classes) classes, \(training.parameterNames.count) parameters, threads \(training.session.context.threads), gemm \(GEMMLibrary.current.rawValue)")
        printPasses(training.session)   // the gradient graph's (the forward's ran before autodiff)
        var lastLoss: Float = 0
        var poolBeforeTimed = BufferPool.shared.statistics
        let result = try Benchmark.measure(warmup: warmup, iterations: iterations, beforeTimed: {
            training.session.profiling = profile
            poolBeforeTimed = BufferPool.shared.statistics
        }) {
            lastLoss = try training.step(optimizer.step + 1, batch: inputs, optimizer: optimizer, learningRate: 6e-5).losses[0]
        }
        if profile { printProfile(training.session) }
        print("loss after \(optimizer.step) steps: \(lastLoss)")
        let plan = try training.executionPlan(pixelValues: inputs.pixelValues, labels: inputs.labels)
        let peak = plan.activationPeak
        if peak.step >= 0 {
            let unsized = peak.unsizedValues == 0 ? "" : ", \(peak.unsizedValues) values of run-time size not counted"
            print("activation peak (plan, upper bound\(unsized)): \(formatBytes(peak.bytes)) after step \(peak.step + 1) of \(plan.stepCount) (\(plan.describeStep(peak.step))); largest values live there:")
            for v in peak.values.prefix(8) { print("  \(formatBytes(v.bytes).padding(toLength: 10, withPad: " ", startingAt: 0)) \(v.name)") }
        }
        printMemory(peakResident: result.peakMegabytes, activationPeak: peak.step >= 0 ? peak.bytes : nil,
                    parameters: training.parameterNames.reduce(0) { $0 + (training.parameter($1)?.count ?? 0) })
        // What keeping the pool under its cap costs: buffers evicted and taken again from the system.
        let fresh = BufferPool.shared.statistics.systemAllocatedBytes - poolBeforeTimed.systemAllocatedBytes
        print("  taken from the system per timed step  \(formatBytes(fresh / max(1, iterations)))")
        print(result)
    }

    /// Where the peak resident memory of a training run went: the buffer pool (activations, gradients,
    /// AdamW's moments, the batch) and the rest of the process.
    func printMemory(peakResident: Double, activationPeak: Int?, parameters: Int) {
        let pool = BufferPool.shared.statistics
        let resident = Int(peakResident * 1024 * 1024)
        func line(_ what: String, _ bytes: Int, _ note: String = "") {
            print("  " + what.padding(toLength: 44, withPad: " ", startingAt: 0)
                  + formatBytes(bytes).padding(toLength: 10, withPad: " ", startingAt: 0) + note)
        }
        print("memory at its peak:")
        line("peak resident (RSS)", resident)
        line("buffer pool, most held at once", pool.peakHeldBytes, "  (in use + cached for reuse)")
        line("  most in use at once", pool.peakLiveBytes)
        if let activationPeak { line("    plan's activation peak (upper bound)", activationPeak, "  (gradients included)") }
        line("    AdamW moments", 2 * parameters * MemoryLayout<Float>.stride)
        line("outside the pool", resident - pool.peakHeldBytes,
             "  (code and libraries, the model as loaded and \(formatBytes(parameters * MemoryLayout<Float>.stride)) of parameters, OpenBLAS's buffers)")
    }

    /// What each optimizing pass changed in the session's graph, or that they were off.
    func printPasses(_ session: Session) {
        if let report = session.compiled.optimization {
            print(report.passes.map(\.description).joined(separator: "\n"))
        } else {
            print("optimizing passes: off")
        }
    }

    func printProfile(_ session: Session) {
        let total = session.profile.values.reduce(0) { $0 + $1.milliseconds }
        print("time per op type (per run):")
        for (op, p) in session.profile.sorted(by: { $0.value.milliseconds > $1.value.milliseconds }) {
            let perRun = p.milliseconds / Double(iterations)
            let name = op.padding(toLength: max(op.count, 22), withPad: " ", startingAt: 0)
            print("  " + name + String(format: " %8.2f ms  %5.1f%%  %4d calls", perRun, 100 * p.milliseconds / max(total, 1e-9), p.calls / iterations))
        }
        print("costliest nodes (per run):")
        for (label, p) in session.nodeProfile.sorted(by: { $0.value.milliseconds > $1.value.milliseconds }).prefix(25) {
            print(String(format: "  %8.2f ms  ", p.milliseconds / Double(iterations)) + label)
        }
    }
}
