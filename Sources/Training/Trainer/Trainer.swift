import Foundation
import GraphIR
import Runtime
import SegmentationData

/// Settings of a fine-tuning run (defaults follow HF's semantic-segmentation guide and the SegFormer
/// paper where they agree).
public struct TrainerOptions: Sendable {
    /// Optimizer steps to take (after gradient accumulation). Either this or `epochs`.
    public var maxSteps: Int?
    /// Passes over the training set (used when `maxSteps` is nil).
    public var epochs: Int?
    /// Batches whose gradients are summed into one optimizer step.
    public var gradientAccumulation = 1
    /// The peak learning rate (AdamW), reached after warm-up.
    public var learningRate = 6e-5
    /// How the learning rate falls after warm-up: constant, linearly or polynomially (power 1) to 0.
    public var schedule: ScheduleKind = .poly
    /// Optimizer steps of linear warm-up from 0 to `learningRate`.
    public var warmupSteps = 0
    /// AdamW's decoupled weight decay.
    public var weightDecay = 0.01
    /// The paper trains the decode head at 10× the learning rate.
    public var headLearningRateMultiplier = 10.0
    /// No weight decay on norm and position-block parameters (NVlabs recipe).
    public var noDecayOnNorms = true
    /// Evaluate (and keep the best model) every N steps; nil: at the end of every epoch.
    public var evaluateEvery: Int?
    /// Write a resumable checkpoint every N steps (and at the end).
    public var checkpointEvery = 50
    /// The folder that receives `model.onnx`, `last.onnx` and `checkpoint/` (created if missing).
    public var outputDirectory: String
    /// Append one JSON object per optimizer step (`TrainingLogEntry`) to this file.
    public var logJSONPath: String?
    /// Continue from the checkpoint in `outputDirectory` exactly where it stopped.
    public var resume = false
    /// Start afresh in a folder that holds another run's checkpoint, replacing it (otherwise that is
    /// refused: a new run never silently destroys a resumable one).
    public var replaceExistingRun = false
    /// Intra-op threads (default: all cores).
    public var threads: Int?
    /// Seed of dropout / drop-path masks in training-mode graphs (the stream's position is checkpointed).
    public var seed: UInt64 = 0
    /// Label value the loss ignores.
    public var ignoreIndex = 255

    /// Learning-rate schedules after warm-up.
    public enum ScheduleKind: String, Sendable, CaseIterable { case constant, linear, poly }

    /// Defaults as above; set `maxSteps` or `epochs` before training.
    public init(outputDirectory: String) { self.outputDirectory = outputDirectory }
}

/// One line of the training log (also written as a JSON object per optimizer step).
public struct TrainingLogEntry: Codable, Sendable {
    public var step: Int
    public var epoch: Int
    public var loss: Double
    public var lr: Double
    public var imagesPerSecond: Double
    public var elapsedSeconds: Double
    public var mIoU: Double?
}

/// Thrown by `Trainer.run` when `shouldStop` ends training early.
public struct TrainingStopped: Error, CustomStringConvertible {
    /// The last step taken (its checkpoint, when one was due, is written).
    public let step: Int
    public var description: String { "training stopped after step \(step)" }
}

/// Fine-tunes a SegFormer ONNX graph: batches from a `SegmentationDataLoader`, HF loss, autodiff,
/// AdamW with warm-up + linear/poly schedule and a head learning-rate multiplier, periodic evaluation
/// keeping the best model by validation mIoU, JSON-lines log, atomic checkpoints and exact resume.
public final class Trainer {
    public let training: TrainingSession
    public let loader: SegmentationDataLoader
    public let validation: SegmentationDataset?
    public let evaluator: SegmentationEvaluator?
    public let options: TrainerOptions
    public let optimizer: AdamW
    public private(set) var step = 0
    public private(set) var bestMIoU: Double?
    /// Called with human-readable progress (a progress bar on terminals is the CLI's business).
    public var onLog: (TrainingLogEntry, String) -> Void = { _, line in print(line) }
    /// Asked with the step number once the step is logged and checkpointed: `true` stops training
    /// there, as an interruption would (no final model is written), and `run` throws `TrainingStopped`.
    public var shouldStop: (Int) -> Bool = { _ in false }

    public var totalSteps: Int {
        if let s = options.maxSteps { return s }
        let perEpoch = max(1, loader.batchesPerEpoch / max(1, options.gradientAccumulation))
        return perEpoch * (options.epochs ?? 1)
    }

    var checkpointPath: String { options.outputDirectory + "/checkpoint" }

    public init(model: Model, loader: SegmentationDataLoader, validation: SegmentationDataset?,
                evaluator: SegmentationEvaluator?, options: TrainerOptions) throws {
        guard options.maxSteps != nil || options.epochs != nil else {
            throw SegFormerError.invalid("training needs --max-steps or --epochs")
        }
        guard options.gradientAccumulation >= 1 else { throw SegFormerError.invalid("gradient accumulation must be ≥ 1") }
        if !options.resume && !options.replaceExistingRun
            && FileManager.default.fileExists(atPath: options.outputDirectory + "/checkpoint") {
            throw SegFormerError.io("\(options.outputDirectory) already holds a training run; use --resume to continue it or choose another --output")
        }
        self.options = options
        self.loader = loader
        self.validation = validation
        self.evaluator = evaluator
        training = try TrainingSession(model: model, options: TrainingOptions(ignoreIndex: options.ignoreIndex,
                                                                              threads: options.threads, seed: options.seed))
        // Parameter groups: decode head at a higher rate; no decay on norms / position blocks.
        let consumers = Trainer.consumerNodes(training.model.graph)
        var head: [String] = [], noDecay: [String] = [], headNoDecay: [String] = []
        for name in training.parameterNames {
            let where_ = (consumers[name] ?? "") + " " + name
            let isHead = where_.contains("decode_head")
            let isNorm = options.noDecayOnNorms && (where_.lowercased().contains("norm") || where_.contains("pos_block"))
            switch (isHead, isNorm) {
            case (true, true): headNoDecay.append(name)
            case (true, false): head.append(name)
            case (false, true): noDecay.append(name)
            default: break
            }
        }
        let m = options.headLearningRateMultiplier
        optimizer = AdamW(weightDecay: options.weightDecay, groups: [
            ParameterGroup(names: head, learningRateMultiplier: m),
            ParameterGroup(names: noDecay, weightDecay: 0),
            ParameterGroup(names: headNoDecay, learningRateMultiplier: m, weightDecay: 0),
        ])
    }

    /// Names of the nodes reading each initializer (export node names keep module paths, which is how
    /// transposed MatMul weights named `onnx::MatMul_…` are recognised as decode-head weights).
    static func consumerNodes(_ g: Graph) -> [String: String] {
        var out: [String: String] = [:]
        for n in g.nodes { for i in n.inputs where g.initializers[i] != nil && out[i] == nil { out[i] = n.name } }
        return out
    }

    public var schedule: LRSchedule {
        switch options.schedule {
        case .constant: return options.warmupSteps > 0 ? .constantWithWarmup(warmup: options.warmupSteps) : .constant
        case .linear: return .linear(warmup: options.warmupSteps, total: totalSteps)
        case .poly: return .polynomial(warmup: options.warmupSteps, total: totalSteps, power: 1, endRate: 0)
        }
    }

    // MARK: checkpoints

    func saveCheckpoint() throws {
        var pipeline: [String: [UInt64]] = ["loader": loader.state.words]
        if let best = bestMIoU { pipeline["best_miou_bits"] = [best.bitPattern] }
        pipeline["random"] = training.randomState.words
        // Parameters and BatchNorm running statistics (`loadParameters` takes both back).
        let ck = Checkpoint(step: step, parameters: training.modelState, optimizer: optimizer.state,
                            pipelineState: pipeline, metadata: ["format": "segformer-swift trainer"])
        try ck.write(to: checkpointPath)
    }

    /// Restores parameters, optimizer, step, best mIoU and the loader position from the checkpoint.
    public func resumeFromCheckpoint() throws -> Bool {
        guard FileManager.default.fileExists(atPath: checkpointPath + "/state.json")
                || FileManager.default.fileExists(atPath: checkpointPath + ".old/state.json") else { return false }
        let ck = try Checkpoint.read(from: checkpointPath)
        do { try training.loadParameters(ck.parameters) } catch let e as SegFormerError { throw e.prefixed(checkpointPath) }
        optimizer.state = ck.optimizer
        step = ck.step
        if let words = ck.pipelineState["loader"] { try loader.restore(try DataLoaderState(words: words)) }
        if let b = ck.pipelineState["best_miou_bits"]?.first { bestMIoU = Double(bitPattern: b) }
        if let words = ck.pipelineState["random"] { training.randomState = try RandomStream(words: words) }
        return true
    }

    // MARK: running

    /// Trains to `totalSteps`; returns the last log entry.
    @discardableResult
    public func run() throws -> TrainingLogEntry? {
        let fm = FileManager.default
        try fm.createDirectory(atPath: options.outputDirectory, withIntermediateDirectories: true)
        if options.resume, try resumeFromCheckpoint() {
            onLog(TrainingLogEntry(step: step, epoch: loader.state.epoch, loss: .nan, lr: 0, imagesPerSecond: 0,
                                   elapsedSeconds: 0, mIoU: bestMIoU), "resumed from \(checkpointPath) at step \(step)")
        }
        var logHandle: FileHandle?
        if let path = options.logJSONPath {
            if !fm.fileExists(atPath: path) || !options.resume { fm.createFile(atPath: path, contents: nil) }
            logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try logHandle?.seekToEnd()
        }
        defer { try? logHandle?.close() }
        let started = Benchmark.now()
        var last: TrainingLogEntry?
        let total = totalSteps
        while step < total {
            let t0 = Benchmark.now()
            let lr = schedule.rate(at: step, base: options.learningRate)
            let taken = try training.step(step + 1, optimizer: optimizer, learningRate: lr,
                                          microBatches: options.gradientAccumulation) { try loader.next() }
            step += 1
            let dt = (Benchmark.now() - t0) / 1000
            var entry = TrainingLogEntry(step: step, epoch: loader.state.epoch, loss: taken.meanLoss,
                                         lr: lr, imagesPerSecond: Double(taken.images) / max(dt, 1e-9),
                                         elapsedSeconds: (Benchmark.now() - started) / 1000, mIoU: nil)
            let evaluateNow = validation != nil && (options.evaluateEvery.map { step % $0 == 0 } ?? (step % max(1, loader.batchesPerEpoch / options.gradientAccumulation) == 0))
            if evaluateNow || (step == total && validation != nil) {
                entry.mIoU = try evaluateAndKeepBest()
            }
            if let h = logHandle {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                var data = try encoder.encode(entry)
                data.append(0x0A)
                try h.write(contentsOf: data)
            }
            let eta = (entry.elapsedSeconds / Double(max(1, step))) * Double(total - step)
            var line = String(format: "step %d/%d  epoch %d  loss %.4f  lr %.3g  %.2f img/s  ETA %@",
                              step, total, entry.epoch, entry.loss, lr, entry.imagesPerSecond, Trainer.duration(eta) as NSString)
            if let m = entry.mIoU { line += String(format: "  val mIoU %.4f", m) }
            onLog(entry, line)
            last = entry
            if step % options.checkpointEvery == 0 || step == total { try saveCheckpoint() }
            if shouldStop(step) { throw TrainingStopped(step: step) }
        }
        // The final model: the best by validation mIoU when validating, else the last.
        let modelPath = options.outputDirectory + "/model.onnx"
        let final = try training.inferenceModel()
        if validation == nil || !fm.fileExists(atPath: modelPath) { try ONNXExporter.write(final, to: modelPath) }
        try ONNXExporter.write(final, to: options.outputDirectory + "/last.onnx")
        return last
    }

    /// Evaluates the current parameters; writes `model.onnx` when the mIoU is the best so far.
    func evaluateAndKeepBest() throws -> Double? {
        guard let validation, let evaluator else { return nil }
        let current = try training.inferenceModel()
        let session = try Session(model: current, options: SessionOptions(threads: options.threads))
        let m = try evaluator.evaluate(session: session, dataset: validation).meanIoU
        if bestMIoU == nil || m > bestMIoU! {
            bestMIoU = m
            try ONNXExporter.write(current, to: options.outputDirectory + "/model.onnx")
        }
        return m
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
