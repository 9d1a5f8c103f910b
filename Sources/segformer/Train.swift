import ArgumentParser
import Foundation
import GraphIR
import Runtime
import Training
import SegmentationData
import SegformerModels

/// Where the data is and how its labels read; shared by `train` and `evaluate`.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset root in the ADEChallengeData2016 layout (images/{training,validation}, annotations/…).") var data: String?
    @Option(help: "Generic layout: folder of images (matched to --masks by file stem).") var images: String?
    @Option(help: "Generic layout: folder of 8-bit PNG masks.") var masks: String?
    @Option(help: "HF config.json (id2label) or a labels file (one name per line, or objectInfo150.csv).") var labels: String?
    @Flag(inversion: .prefixedNo, help: "reduce_labels: 0 (\"other\") → 255, k → k−1 (default: on for the ADE layout).") var reduceLabels: Bool?
    @Flag(help: "Skip samples with a corrupt image or out-of-range label instead of stopping.") var skipBadSamples = false

    func dataset(split: SegmentationDataset.Split, numLabels: Int) throws -> SegmentationDataset {
        let d: SegmentationDataset
        if let root = data {
            d = try SegmentationDataset(adeRoot: root, split: split, numLabels: numLabels, skipBadSamples: skipBadSamples)
        } else if let images, let masks {
            d = try SegmentationDataset(imagesDirectory: images, masksDirectory: masks,
                                        numLabels: numLabels, skipBadSamples: skipBadSamples)
            if reduceLabels ?? false { d.maxLabel = numLabels }
        } else {
            throw SegFormerError.invalid("give --data DIR (ADE layout) or --images DIR --masks DIR")
        }
        if let labels { try d.loadLabels(path: labels) }
        return d
    }

    var reduce: Bool { reduceLabels ?? (data != nil) }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a SegFormer ONNX model on a scene-parsing dataset; writes DIR/model.onnx, config.json, checkpoints, logs.")

    @Argument(help: "The .onnx model to fine-tune (SegformerForSemanticSegmentation export or `segformer init`).") var model: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Validation split of the ADE layout ('none' to skip).") var valSplit: String = "validation"
    @Option(help: "Epochs to train.") var epochs: Int?
    @Option(help: "Optimizer steps to train (overrides --epochs).") var maxSteps: Int?
    @Option(help: "Images per batch.") var batchSize: Int = 2
    @Option(help: "Batches per optimizer step.") var gradientAccumulation: Int = 1
    @Option(help: "Random crop size for training.") var crop: Int = 512
    @Option(help: "Image processor size (evaluation resizes to this).") var size: Int = 512
    @Option(help: "Learning rate.") var lr: Double = 6e-5
    @Option(help: "constant, linear or poly.") var lrSchedule: String = "poly"
    @Option(help: "Linear warm-up steps.") var warmupSteps: Int = 0
    @Option(help: "AdamW weight decay (none on norms).") var weightDecay: Double = 0.01
    @Option(help: "Learning-rate multiplier for the decode head.") var headLrMultiplier: Double = 10
    @Option(help: "Evaluate every N steps (default: every epoch).") var evalEvery: Int?
    @Option(help: "Checkpoint every N steps.") var checkpointEvery: Int = 50
    @Option(help: "Seed for shuffling and augmentation.") var seed: UInt64 = 0
    @Flag(help: "No random resize/crop/flip/colour jitter (images are resized to --size).") var noAugment = false
    @Flag(help: "Keep the dataset order.") var noShuffle = false
    @Option(help: "Append one JSON object per optimizer step to this file.") var logJson: String?
    @Option(help: "Output folder.") var output: String = "segformer-output"
    @Flag(help: "Continue from OUTPUT/checkpoint exactly where it stopped.") var resume = false
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?

    func run() throws {
        try reportingErrors {
            guard let schedule = TrainerOptions.ScheduleKind(rawValue: lrSchedule) else {
                throw SegFormerError.invalid("--lr-schedule must be constant, linear or poly")
            }
            guard batchSize > 0, crop > 0, size > 0 else { throw SegFormerError.invalid("--batch-size, --crop and --size must be positive") }
            let m = try ONNXImporter.load(contentsOf: model)
            let classes = try SegmentationModel.classCount(of: m)
            if let dims = m.graph.runtimeInputs.first?.type.shape, dims.count == 4, let h = dims[2].value, let w = dims[3].value,
               h != crop || w != crop || h != size || w != size {
                throw SegFormerError.invalid("\(model) takes \(h)×\(w) inputs (static in the export); use --crop \(h) --size \(h), or export with dynamic height/width")
            }
            let train = try dataOptions.dataset(split: .training, numLabels: classes)
            var processor = SegformerImageProcessor(height: size, width: size)
            processor.doReduceLabels = dataOptions.reduce
            let augmentation = noAugment ? nil : SegmentationAugmentation(cropSize: crop)
            let loader = try SegmentationDataLoader(dataset: train, batchSize: batchSize, shuffle: !noShuffle,
                                                    dropLast: train.count >= batchSize, augmentation: augmentation,
                                                    processor: processor, seed: seed)
            var validation: SegmentationDataset?
            if valSplit != "none", dataOptions.data != nil, let split = SegmentationDataset.Split(rawValue: valSplit) {
                validation = try dataOptions.dataset(split: split, numLabels: classes)
            }
            let evaluator = SegmentationEvaluator(processor: processor, numLabels: classes, reduceLabels: dataOptions.reduce)
            var options = TrainerOptions(outputDirectory: output)
            options.maxSteps = maxSteps
            options.epochs = maxSteps == nil ? (epochs ?? 1) : nil
            options.gradientAccumulation = gradientAccumulation
            options.learningRate = lr
            options.schedule = schedule
            options.warmupSteps = warmupSteps
            options.weightDecay = weightDecay
            options.headLearningRateMultiplier = headLrMultiplier
            options.evaluateEvery = evalEvery
            options.checkpointEvery = checkpointEvery
            options.logJSONPath = logJson
            options.resume = resume
            options.threads = threads
            let trainer = try Trainer(model: m, loader: loader, validation: validation, evaluator: validation == nil ? nil : evaluator,
                                      options: options)
            print("training \(trainer.training.parameterNames.count) parameters on \(train.count) images (\(classes) classes), \(trainer.totalSteps) steps of batch \(batchSize)×\(gradientAccumulation)")
            let total = trainer.totalSteps
            trainer.onLog = { entry, line in
                if stdoutIsTerminal {
                    // A progress bar redrawn in place; evaluations and the last step stay on screen.
                    let width = 24, filled = min(width, width * entry.step / max(1, total))
                    let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
                    print("\r\u{1B}[K" + bar + line, terminator: entry.mIoU != nil || entry.step == total ? "\n" : "")
                } else {
                    print(line)
                }
                fflush(stdout)
            }
            try trainer.run()
            // config.json for the trained model: id2label from the labels the data came with.
            try ConfigJSON.write(numLabels: classes, id2label: train.id2label, to: output + "/config.json")
            if let best = trainer.bestMIoU { print(String(format: "best validation mIoU %.4f", best)) }
            print("wrote \(output)/model.onnx, \(output)/config.json, \(output)/checkpoint")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a segmentation model: mean IoU, mean accuracy, overall accuracy and a per-class table.")

    @Argument(help: "The .onnx model.") var model: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Split of the ADE layout.") var split: String = "validation"
    @Option(help: "Image processor size.") var size: Int = 512
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?

    func run() throws {
        try reportingErrors {
            guard let s = SegmentationDataset.Split(rawValue: split) else {
                throw SegFormerError.invalid("--split must be training or validation")
            }
            let m = try ONNXImporter.load(contentsOf: model)
            let classes = try SegmentationModel.classCount(of: m)
            let dataset = try dataOptions.dataset(split: s, numLabels: classes)
            let session = try Session(model: m, options: SessionOptions(threads: threads))
            let evaluator = SegmentationEvaluator(processor: SegformerImageProcessor(height: size, width: size),
                                                  numLabels: classes, reduceLabels: dataOptions.reduce)
            let result = try evaluator.evaluate(session: session, dataset: dataset) { done, total in
                if stdoutIsTerminal { print("\r\(done)/\(total)", terminator: ""); fflush(stdout) }
            }
            if stdoutIsTerminal { print("") }
            print(result.table(labels: dataset.id2label))
        }
    }
}
