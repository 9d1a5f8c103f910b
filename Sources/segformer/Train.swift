import ArgumentParser
import Foundation
import GraphIR
import Runtime
import Training
import SegmentationData
import SegformerModels
import Applications

/// Where the data is and how its labels read; shared by `train` and `evaluate`.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset root in the ADEChallengeData2016 layout (images/{training,validation}, annotations/…).") var data: String?
    @Option(help: "Generic layout: folder of images (matched to --masks by file stem).") var images: String?
    @Option(help: "Generic layout: folder of 8-bit PNG masks.") var masks: String?
    @Option(help: "HF config.json (id2label) or a labels file (one name per line, or objectInfo150.csv).") var labels: String?
    @Flag(inversion: .prefixedNo, help: "reduce_labels: 0 (\"other\") → 255, k → k−1 (default: on for the ADE layout).") var reduceLabels: Bool?
    @Flag(help: "Skip samples with a corrupt image or out-of-range label instead of stopping.") var skipBadSamples = false

    /// The data these options name.
    func source() throws -> SegmentationDataSource {
        let layout: SegmentationDataSource.Layout
        if let root = data {
            layout = .ade(root: root)
        } else if let images, let masks {
            layout = .folders(images: images, masks: masks)
        } else {
            throw SegFormerError.invalid("give --data DIR (ADE layout) or --images DIR --masks DIR")
        }
        return SegmentationDataSource(layout, labelsPath: labels, reduceLabels: reduceLabels, skipBadSamples: skipBadSamples)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a SegFormer ONNX model on a scene-parsing dataset; writes DIR/model.onnx, config.json, checkpoints, logs.")

    // The header looks like Evaluate's below: the options differ, the shape is ArgumentParser's.
    @Argument(help: "The model to fine-tune: a SegformerForSemanticSegmentation .onnx export or `segformer init` output, or a HuggingFace checkpoint folder (its id2label goes into config.json unless --labels or the data names the classes).") var model: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Validation split of the ADE layout ('none' to skip).") var valSplit: String = "validation"
    @Option(help: "Epochs to train.") var epochs: Int?
    @Option(help: "Optimizer steps to train (overrides --epochs).") var maxSteps: Int?
    @Option(help: "Images per batch (per process under mpirun: the global batch is N × this).") var batchSize: Int = 2
    @Option(help: "Batches per optimizer step.") var gradientAccumulation: Int = 1
    @Option(help: "Random crop size for training.") var crop: Int = 512
    @Option(help: "Image processor size (evaluation resizes to this).") var size: Int = 512
    @Option(help: "Learning rate.") var lr: Double = 6e-5
    @Option(help: "constant, linear or poly.") var lrSchedule: String = "poly"
    @Option(help: "Linear warm-up steps.") var warmupSteps: Int = 0
    @Option(help: "AdamW weight decay (none on norms).") var weightDecay: Double = 0.01
    @Option(help: "Learning-rate multiplier for the decode head.") var headLrMultiplier: Double = 10
    @Option(help: "Evaluate every N steps (default: every epoch).") var evalEvery: Int?
    @Option(help: "How validation evaluates: resize (HF: images at --size), whole or slide (the paper's, with evaluate's default scale, crop and stride; see evaluate --help).") var evalMode: String = "resize"
    @Option(help: "Checkpoint every N steps.") var checkpointEvery: Int = 50
    @Option(help: "Seed for shuffling, augmentation and dropout / drop-path masks.") var seed: UInt64 = 0
    @Flag(help: "No random resize/crop/flip/colour jitter (images are resized to --size).") var noAugment = false
    @Flag(help: "Keep the dataset order.") var noShuffle = false
    @Option(help: "Append one JSON object per optimizer step to this file.") var logJson: String?
    @Option(help: "Output folder.") var output: String = "segformer-output"
    @Flag(help: "Continue from OUTPUT/checkpoint exactly where it stopped (an error when there is none, or it does not verify).") var resume = false
    @Flag(help: "With --resume: accept options that differ from the checkpoint's (listed otherwise).") var allowOptionChanges = false
    @Flag(help: "Start afresh in an output folder holding another run (model.onnx, last.onnx, config.json, checkpoint, log), replacing it.") var overwrite = false
    @Flag(help: "Under mpirun: training-mode BatchNorm normalises with the statistics of the whole global batch (PyTorch's SyncBatchNorm), so N processes of --batch-size B train as one of N×B; without it each process uses its own slice's. One process: no effect.")
    var syncBatchnorm = false
    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var distributedOptions: DistributedOptions

    /// The job's options as these flags set them (`validate()` checks them before `run`).
    func fineTuningOptions() throws -> FineTuningOptions {
        guard let schedule = TrainerOptions.ScheduleKind(rawValue: lrSchedule) else {
            throw SegFormerError.invalid("--lr-schedule must be constant, linear or poly, not '\(lrSchedule)'")
        }
        var options = FineTuningOptions(outputDirectory: output)
        options.batchSize = batchSize
        options.cropSize = crop
        options.imageSize = size
        options.augment = !noAugment
        options.shuffle = !noShuffle
        options.seed = seed
        guard let mode = try? EvaluationMode(name: evalMode) else {
            throw SegFormerError.invalid("--eval-mode must be resize, whole or slide, not '\(evalMode)'")
        }
        options.evaluationMode = mode
        if valSplit != "none" {
            guard let split = SegmentationDataset.Split(rawValue: valSplit) else {
                throw SegFormerError.invalid("--val-split must be training, validation or none, not '\(valSplit)'")
            }
            options.validationSplit = split
        } else {
            options.validationSplit = nil
        }
        // One line per option: a list of distinct settings whose halves only look alike.
        options.trainer.maxSteps = maxSteps
        options.trainer.epochs = maxSteps == nil ? (epochs ?? 1) : nil
        options.trainer.gradientAccumulation = gradientAccumulation
        options.trainer.learningRate = lr
        options.trainer.schedule = schedule
        options.trainer.warmupSteps = warmupSteps
        options.trainer.weightDecay = weightDecay
        options.trainer.headLearningRateMultiplier = headLrMultiplier
        options.trainer.evaluateEvery = evalEvery
        options.trainer.checkpointEvery = checkpointEvery
        options.trainer.logJSONPath = logJson
        options.trainer.resume = resume
        options.trainer.allowOptionChanges = allowOptionChanges
        options.trainer.replaceExistingRun = overwrite
        options.trainer.inputPaths = [model] + [dataOptions.labels].compactMap { $0 }
        options.trainer.threads = threadOptions.threads
        options.trainer.synchronizeBatchNorm = syncBatchnorm
        return options
    }

    func run() throws {
        try distributedOptions.run(threads: threadOptions.threads) { group, threads in try train(group: group, threads: threads) }
    }

    func train(group: (any ProcessGroup)?, threads: Int?) throws {
        try reportingErrors {
            var options = try fineTuningOptions()
            options.trainer.threads = threads
            options.trainer.processGroup = group
            let m = try ModelFile.load(model)
            options.classNames = try ModelFile.classNames(model)
            let data = try dataOptions.source()
            let validationProgress = ProgressLine("validation")
            if (group?.rank ?? 0) == 0 { options.validationProgress = { validationProgress.update($0, $1) } }
            let job = try FineTuning(model: m, data: data, options: options)
            let trainer = job.trainer
            let writer = trainer.isWriter
            let processes = group.map { " on \($0.size) processes" } ?? ""
            if writer { print("training \(trainer.training.parameterNames.count) parameters on \(job.trainingSet.count) images (\(job.classCount) classes), \(trainer.totalSteps) steps of batch \(batchSize)×\(gradientAccumulation)\(processes)") }
            let total = trainer.totalSteps
            trainer.onLog = { entry, line in
                // (mpirun hands its processes a pseudo-terminal even when its own output is a file: plain lines.)
                if stdoutIsTerminal && group == nil {
                    // A progress bar redrawn in place; evaluations and the last step stay on screen.
                    let width = 24, filled = min(width, width * entry.step / max(1, total))
                    let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
                    print("\r\u{1B}[K" + bar + line, terminator: entry.mIoU != nil || entry.step == total ? "\n" : "")
                } else {
                    print(line)
                }
                fflush(stdout)
            }
            try job.run()
            guard writer else { return }
            if let best = trainer.bestMIoU { print(String(format: "best validation mIoU %.4f", best)) }
            print("wrote \(output)/model.onnx, \(output)/config.json, \(output)/checkpoint")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a segmentation model: mean IoU, mean accuracy, overall accuracy and a per-class table.")

    // The header looks like Train's above: the options differ, the shape is ArgumentParser's.
    @Argument(help: "The .onnx model, or a HuggingFace checkpoint folder.") var model: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Split of the ADE layout.") var split: String = "validation"
    @Option(help: "Image processor size (--mode resize).") var size: Int = 512
    @Option(help: ArgumentHelp("resize, whole or slide.", discussion: """
        resize: HF's evaluation, images resized to --size. whole: the paper's (MMSegmentation's ADE20K test \
        pipeline): each image resized keeping its aspect ratio to short side 512 with the long side at most \
        2048 (--scale), the logits upsampled to that size, then to the label's. slide: the same resize, then \
        --crop windows every --stride pixels whose logits are averaged where they overlap. Images are \
        resampled with the processor's filter (PIL bilinear, as HF), where MMSegmentation uses OpenCV's.
        """)) var mode: String = "resize"
    @Option(help: "mmseg's Resize scale LONG,SHORT for --mode whole and slide.") var scale: String = "2048,512"
    @Option(help: "Window side of --mode slide.") var crop: Int = 512
    @Option(help: "Step between windows of --mode slide (at most --crop).") var stride: Int = 341
    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var distributedOptions: DistributedOptions

    var evaluationMode: EvaluationMode {
        get throws { try EvaluationMode(name: mode, scale: scale, crop: crop, stride: stride) }
    }

    func run() throws {
        try distributedOptions.run(threads: threadOptions.threads) { group, threads in try evaluate(group: group, threads: threads) }
    }

    /// Under mpirun each process scores its share of the images; rank 0 prints the table of the summed areas.
    func evaluate(group: (any ProcessGroup)?, threads: Int?) throws {
        try reportingErrors {
            guard let s = SegmentationDataset.Split(rawValue: split) else {
                throw SegFormerError.invalid("--split must be training or validation")
            }
            let m = try ModelFile.loadForInference(model)
            let classes = try SegmentationModel.classCount(of: m)
            let data = try dataOptions.source()
            let dataset = try data.dataset(split: s, numLabels: classes)
            let session = try Session(model: m, options: SessionOptions(threads: threads))
            var evaluator = SegmentationEvaluator(processor: SegformerImageProcessor(height: size, width: size),
                                                  numLabels: classes, reduceLabels: data.reducesLabels)
            evaluator.mode = try evaluationMode
            let writer = (group?.rank ?? 0) == 0
            let progress = ProgressLine("evaluating")
            let result = try evaluator.evaluate(session: session, dataset: dataset, group: group) { done, total in
                if writer { progress.update(done, total) }
            }
            guard writer else { return }
            print(result.table(labels: dataset.id2label))
        }
    }
}
