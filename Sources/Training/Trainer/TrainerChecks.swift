import Foundation
import GraphIR
import SegmentationData

// What the trainer checks before it trains: its outputs (one overwrite policy, as every command's) and,
// when resuming, that the checkpoint belongs to this run. Each failure is one error naming the file,
// tensor, value or option at fault.
extension Trainer {
    /// Files a run writes into its output folder.
    static let outputFiles = ["model.onnx", "last.onnx", "config.json", "checkpoint"]

    /// Before any work: a fresh run refuses an output folder holding another run's outputs unless
    /// `replaceExistingRun`; a resumed run needs a checkpoint to resume; no output is an input.
    static func checkOutputs(_ options: TrainerOptions) throws {
        let fm = FileManager.default
        let folder = options.outputDirectory
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: folder, isDirectory: &isFolder), !isFolder.boolValue {
            throw SegFormerError.io("output folder \(folder) is a file")
        }
        let checkpoint = folder + "/checkpoint"
        var outputs = outputFiles.map { folder + "/" + $0 }
        if let log = options.logJSONPath { outputs.append(log) }
        if options.resume {
            guard fm.fileExists(atPath: checkpoint + "/state.json") || fm.fileExists(atPath: checkpoint + ".old/state.json") else {
                var isCheckpointFolder: ObjCBool = false
                let what = !fm.fileExists(atPath: folder) ? "the folder does not exist"
                    : !fm.fileExists(atPath: checkpoint, isDirectory: &isCheckpointFolder) ? "there is no \(checkpoint)"
                    : isCheckpointFolder.boolValue ? "\(checkpoint) holds no state.json" : "\(checkpoint) is a file"
                throw SegFormerError.io("--resume: nothing to resume in \(folder) (\(what)); check --output, or start without --resume")
            }
            // The run's own outputs are replaced as it continues; inputs never are.
            try OutputGuard.requireWritable(outputs, overwrite: true, inputs: options.inputPaths)
            return
        }
        if !options.replaceExistingRun && fm.fileExists(atPath: checkpoint) {
            throw SegFormerError.io("\(folder) already holds a training run; use --resume to continue it, --overwrite to replace it, or choose another --output")
        }
        try OutputGuard.requireWritable(outputs, overwrite: options.replaceExistingRun, inputs: options.inputPaths)
    }

    /// A checkpoint fits this run when it holds exactly this model's parameters (finite, with their
    /// shapes) and optimizer slots, a step within the run, a sane loader state, and was written with
    /// the same options (or `allowOptionChanges`).
    func verifyForResume(_ ck: Checkpoint) throws {
        let at = checkpointPath
        // The model's state: its parameters and the running statistics of training-mode BatchNorms.
        let state = training.modelState
        let names = Set(state.keys)
        if let missing = state.keys.sorted().first(where: { ck.parameters[$0] == nil }) {
            throw SegFormerError.invalid("\(at): parameter '\(missing)' is missing")
        }
        if let extra = ck.parameters.keys.sorted().first(where: { !names.contains($0) }) {
            throw SegFormerError.invalid("\(at): parameter '\(extra)' is not a parameter of this model")
        }
        for (name, current) in state.sorted(by: { $0.key < $1.key }) {
            let t = ck.parameters[name]!
            if current.shape != t.shape || current.dataType != t.dataType {
                throw SegFormerError.invalid("\(at): parameter '\(name)' is \(t.dataType) \(t.shape), the model's is \(current.dataType) \(current.shape)")
            }
            try Trainer.requireFinite(t, "\(at): parameter '\(name)'")
        }
        for (name, slots) in ck.optimizer.slots.sorted(by: { $0.key < $1.key }) {
            guard let p = ck.parameters[name] else { throw SegFormerError.invalid("\(at): optimizer state for unknown parameter '\(name)'") }
            for slot in ["exp_avg", "exp_avg_sq"] {
                guard let t = slots[slot] else { throw SegFormerError.invalid("\(at): optimizer slot '\(slot)/\(name)' is missing") }
                guard t.shape == p.shape, t.dataType == .float else {
                    throw SegFormerError.invalid("\(at): optimizer slot '\(slot)/\(name)' is \(t.dataType) \(t.shape), the parameter is \(p.shape)")
                }
                try Trainer.requireFinite(t, "\(at): optimizer slot '\(slot)/\(name)'")
            }
        }
        let total = totalSteps
        guard (0...total).contains(ck.step) else {
            throw SegFormerError.invalid("\(at): step \(ck.step) is outside this run's 0…\(total) steps")
        }
        if let words = ck.pipelineState["loader"] {
            let state = try DataLoaderState(words: words)
            // An epoch yields at least one batch, so a step (gradientAccumulation batches) ends at most that many epochs on.
            let maxEpoch = ck.step * options.gradientAccumulation + 1
            guard state.epoch <= maxEpoch else {
                throw SegFormerError.invalid("\(at): data loader epoch \(state.epoch) is impossible at step \(ck.step) (at most \(maxEpoch))")
            }
        }
        if let bits = ck.pipelineState["best_miou_bits"]?.first {
            let best = Double(bitPattern: bits)
            guard best.isFinite, (0...1).contains(best) else { throw SegFormerError.invalid("\(at): best mIoU \(best) is not in 0…1") }
        }
        if ck.manifest != nil && !options.allowOptionChanges {
            let now = options.recordedOptions
            let changed = Set(now.keys).union(ck.options.keys).sorted().filter { now[$0] != ck.options[$0] }
            if !changed.isEmpty {
                let list = changed.map { "--\($0) \(ck.options[$0] ?? "unset") → \(now[$0] ?? "unset")" }.joined(separator: ", ")
                throw SegFormerError.invalid("\(at) was written with other options: \(list); resume with the same ones, or pass --allow-option-changes")
            }
        }
        if ck.manifest == nil {
            warn("\(at) has no manifest (written by an older version): its files are not checksummed and its options not compared")
        }
    }

    static func requireFinite(_ t: Tensor, _ what: String) throws {
        guard t.dataType == .float else { return }
        let p = t.pointer(Float.self)
        for i in 0..<t.count where !p[i].isFinite {
            throw SegFormerError.invalid("\(what) holds \(p[i]) at element \(i) (the checkpoint is damaged)")
        }
    }

    /// Counts batches the step skipped because all their labels were ignored, and names their files.
    func warnAboutSkipped(_ batches: [[Int]]) {
        for indices in batches {
            skippedBatches += 1
            let files = indices.map { loader.dataset.samples.indices.contains($0) ? loader.dataset.samples[$0].labelPath : "sample \($0)" }
            warn("step \(step): batch skipped, every label in it is ignored (\(options.ignoreIndex)): \(files.joined(separator: ", "))")
        }
    }

    func warn(_ message: String) {
        FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
    }
}
