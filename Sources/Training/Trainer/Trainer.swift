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
    /// Evaluate (and keep the best model) every N ≥ 1 steps; nil: at the end of every epoch.
    public var evaluateEvery: Int?
    /// Write a resumable checkpoint every N ≥ 1 steps (and at the end).
    public var checkpointEvery = 50
    /// The folder that receives `model.onnx`, `last.onnx` and `checkpoint/` (created if missing).
    public var outputDirectory: String
    /// Append one JSON object per optimizer step (`TrainingLogEntry`) to this file.
    public var logJSONPath: String?
    /// Continue from the checkpoint in `outputDirectory` exactly where it stopped (an error when there
    /// is none, or when it does not verify).
    public var resume = false
    /// Resume although some of `recordedOptions` differ from the checkpoint's (otherwise that is an
    /// error listing them).
    public var allowOptionChanges = false
    /// Start afresh in a folder that holds another run's outputs (checkpoint, model.onnx, last.onnx,
    /// config.json, the log), replacing them (otherwise that is refused: a new run never silently
    /// destroys what another one left).
    public var replaceExistingRun = false
    /// Files the run reads (the model, a labels file): no output may replace one, even when replacing.
    public var inputPaths: [String] = []
    /// Options of the job around the trainer (batch size, crop, seed, …) by command-line name, recorded
    /// in each checkpoint's manifest with the trainer's own (`recordedOptions`).
    public var jobOptions: [String: String] = [:]
    /// Intra-op threads (default: all cores).
    public var threads: Int?
    /// Seed of dropout / drop-path masks in training-mode graphs (the stream's position is checkpointed).
    public var seed: UInt64 = 0
    /// Label value the loss ignores.
    public var ignoreIndex = 255
    /// The processes of a data-parallel job (nil: this process trains alone). Each process's loader gives
    /// its slice of the global batch; rank 0 alone writes the log, checkpoints and models.
    public var processGroup: (any ProcessGroup)?
    /// SyncBatchNorm (`--sync-batchnorm`): with a `processGroup`, training-mode BatchNorms normalise with the
    /// statistics of the whole global batch and their running statistics move alike on every process, so
    /// N processes of batch B train as one process of batch N×B (`TrainingOptions.batchNormProcesses`).
    /// Off: each process's own slice, as PyTorch DDP without SyncBatchNorm. One process: no change (its
    /// batch is the global batch).
    public var synchronizeBatchNorm = false

    /// Learning-rate schedules after warm-up.
    public enum ScheduleKind: String, Sendable, CaseIterable { case constant, linear, poly }

    /// Defaults as above; set `maxSteps` or `epochs` before training.
    public init(outputDirectory: String) { self.outputDirectory = outputDirectory }

    /// The options that decide what the run computes, by command-line name: a checkpoint records them
    /// and `resume` refuses to continue with different ones unless `allowOptionChanges`.
    public var recordedOptions: [String: String] {
        var out = jobOptions
        out["max-steps"] = maxSteps.map(String.init) ?? "-"
        out["epochs"] = maxSteps == nil ? epochs.map(String.init) ?? "-" : "-"
        out["gradient-accumulation"] = String(gradientAccumulation)
        out["lr"] = String(learningRate)
        out["lr-schedule"] = schedule.rawValue
        out["warmup-steps"] = String(warmupSteps)
        out["weight-decay"] = String(weightDecay)
        out["head-lr-multiplier"] = String(headLearningRateMultiplier)
        out["eval-every"] = evaluateEvery.map(String.init) ?? "epoch"
        out["ignore-index"] = String(ignoreIndex)
        // Recorded when on only, so checkpoints written before the option existed resume unchanged.
        if synchronizeBatchNorm { out["sync-batchnorm"] = "true" }
        return out
    }

    /// Checks every value before anything runs, naming each by its command-line option: counts and
    /// intervals ≥ 1 (no "0 = never"), rates finite and ≥ 0.
    public func validate() throws {
        guard maxSteps != nil || epochs != nil else { throw SegFormerError.invalid("training needs --max-steps or --epochs") }
        try OptionRange.atLeast(1, ["max-steps": maxSteps, "epochs": epochs, "gradient-accumulation": gradientAccumulation,
                                    "eval-every": evaluateEvery, "checkpoint-every": checkpointEvery])
        try OptionRange.atLeast(0, ["warmup-steps": warmupSteps])
        try OptionRange.finite(["lr": learningRate, "weight-decay": weightDecay, "head-lr-multiplier": headLearningRateMultiplier])
    }
}

/// One line of the training log (also written as a JSON object per optimizer step).
public struct TrainingLogEntry: Codable, Sendable {
    public var step: Int
    public var epoch: Int
    /// The mean loss of the step's batches; nil when no batch of the step had a labelled pixel.
    public var loss: Double?
    public var lr: Double
    public var imagesPerSecond: Double
    public var elapsedSeconds: Double
    public var mIoU: Double?
    /// Batches skipped so far because every label in them was ignored (nil: none).
    public var skippedBatches: Int?
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
    /// Batches skipped so far because every label in them was ignored (kept across resumes).
    public internal(set) var skippedBatches = 0
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

    /// Whether this process writes files and reports progress (rank 0 of a data-parallel job).
    public var isWriter: Bool { (options.processGroup?.rank ?? 0) == 0 }

    public init(model: Model, loader: SegmentationDataLoader, validation: SegmentationDataset?,
                evaluator: SegmentationEvaluator?, options: TrainerOptions) throws {
        try options.validate()
        try Trainer.checkOutputs(options)
        self.options = options
        self.loader = loader
        self.validation = validation
        self.evaluator = evaluator
        let batchNormProcesses = options.synchronizeBatchNorm ? options.processGroup : nil
        training = try TrainingSession(model: model, options: TrainingOptions(ignoreIndex: options.ignoreIndex,
                                                                              threads: options.threads, seed: options.seed,
                                                                              batchNormProcesses: batchNormProcesses))
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
        var pipeline: [String: [UInt64]] = ["loader": loader.state.words, "skipped_batches": [UInt64(skippedBatches)]]
        if let group = options.processGroup { pipeline["processes"] = [UInt64(group.size)] }
        if let best = bestMIoU { pipeline["best_miou_bits"] = [best.bitPattern] }
        pipeline["random"] = training.randomState.words
        // Parameters and BatchNorm running statistics (`loadParameters` takes both back).
        let ck = Checkpoint(step: step, parameters: training.modelState, optimizer: optimizer.state,
                            pipelineState: pipeline, metadata: ["format": "segformer-swift trainer"],
                            options: options.recordedOptions)
        try ck.write(to: checkpointPath)
    }

    /// Restores parameters, optimizer, step, best mIoU and the loader position from the checkpoint,
    /// after verifying it against this run (`verifyForResume`). Throws when there is nothing to resume.
    public func resumeFromCheckpoint() throws {
        let ck = try Checkpoint.read(from: checkpointPath)
        try verifyForResume(ck)
        do { try training.loadParameters(ck.parameters) } catch let e as SegFormerError { throw e.prefixed(checkpointPath) }
        optimizer.state = ck.optimizer
        step = ck.step
        if let words = ck.pipelineState["loader"] { try loader.restore(try DataLoaderState(words: words)) }
        if let b = ck.pipelineState["best_miou_bits"]?.first { bestMIoU = Double(bitPattern: b) }
        skippedBatches = Int(clamping: ck.pipelineState["skipped_batches"]?.first ?? 0)
        if let words = ck.pipelineState["random"] { training.randomState = try RandomStream(words: words) }
        let processes = Int(ck.pipelineState["processes"]?.first ?? 1), now = options.processGroup?.size ?? 1
        guard processes == now else {
            throw SegFormerError.invalid("\(checkpointPath) was written by a run of \(processes) process(es); resume it with \(processes), not \(now)")
        }
    }

    // MARK: running

    /// Trains to `totalSteps`; returns the last log entry.
    @discardableResult
    public func run() throws -> TrainingLogEntry? {
        let fm = FileManager.default
        if isWriter {
            do { try fm.createDirectory(atPath: options.outputDirectory, withIntermediateDirectories: true) } catch {
                throw SegFormerError.fileSystem(error, path: options.outputDirectory)
            }
        }
        if options.resume { try resumeFromCheckpoint() }
        try options.processGroup?.requireSameStart(resumed: options.resume, step: step, parameters: training)
        if options.resume && isWriter {
            onLog(TrainingLogEntry(step: step, epoch: loader.state.epoch, loss: nil, lr: 0, imagesPerSecond: 0,
                                   elapsedSeconds: 0, mIoU: bestMIoU), "resumed from \(checkpointPath) at step \(step)")
        }
        var logHandle: FileHandle?
        if let path = options.logJSONPath, isWriter {
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
            let taken: TrainingStepResult
            if let group = options.processGroup {
                taken = try training.dataParallelStep(step + 1, group: group, optimizer: optimizer, learningRate: lr,
                                                      microBatches: options.gradientAccumulation,
                                                      ignoreIndex: options.ignoreIndex) { try loader.next() }
            } else {
                taken = try training.step(step + 1, optimizer: optimizer, learningRate: lr,
                                          microBatches: options.gradientAccumulation, skipUnlabelledBatches: true) { try loader.next() }
            }
            step += 1
            warnAboutSkipped(taken.skippedBatches)
            let dt = (Benchmark.now() - t0) / 1000
            var entry = TrainingLogEntry(step: step, epoch: loader.state.epoch, loss: taken.losses.isEmpty ? nil : taken.meanLoss,
                                         lr: lr, imagesPerSecond: Double(taken.images) / max(dt, 1e-9),
                                         elapsedSeconds: (Benchmark.now() - started) / 1000, mIoU: nil,
                                         skippedBatches: skippedBatches == 0 ? nil : skippedBatches)
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
            let loss = entry.loss.map { String(format: "%.4f", $0) } ?? "- (no labelled pixel)"
            var line = String(format: "step %d/%d  epoch %d  loss %@  lr %.3g  %.2f img/s  ETA %@",
                              step, total, entry.epoch, loss as NSString, lr, entry.imagesPerSecond, Trainer.duration(eta) as NSString)
            if skippedBatches > 0 { line += "  skipped batches \(skippedBatches)" }
            if let m = entry.mIoU { line += String(format: "  val mIoU %.4f", m) }
            if isWriter { onLog(entry, line) }
            last = entry
            if step % options.checkpointEvery == 0 || step == total {
                try options.processGroup?.requireSameParameters(training, step: step)
                if isWriter { try saveCheckpoint() }
            }
            if shouldStop(step) { throw TrainingStopped(step: step) }
        }
        // The final model: the best by validation mIoU when validating, else the last.
        let modelPath = options.outputDirectory + "/model.onnx"
        guard isWriter else { return last }
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
        let m = try evaluator.evaluate(session: session, dataset: validation, group: options.processGroup).meanIoU
        if bestMIoU == nil || m > bestMIoU! {
            bestMIoU = m
            if isWriter { try ONNXExporter.write(current, to: options.outputDirectory + "/model.onnx") }
        }
        return m
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
