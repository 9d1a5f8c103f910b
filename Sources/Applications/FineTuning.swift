import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels
import Training

/// Settings of a fine-tuning job: the trainer's (steps, learning rate, output folder, …) and the data
/// pipeline's (batch, crop, augmentation, validation).
public struct FineTuningOptions: Sendable {
    /// Steps or epochs, learning rate and schedule, checkpoints, logging and the output folder.
    public var trainer: TrainerOptions
    /// Images per batch (per process in a data-parallel job: the global batch is `trainer.processGroup`'s
    /// size × this, the batch one process would take with that batch size).
    public var batchSize = 2
    /// Side of the random training crop, in pixels.
    public var cropSize = 512
    /// The image processor's height and width in pixels (evaluation, and training without augmentation,
    /// resize to it).
    public var imageSize = 512
    /// Random resize, crop, flip and colour jitter; without it images are resized to `imageSize`.
    public var augment = true
    /// Visit the training samples in a new seeded order every epoch.
    public var shuffle = true
    /// Seed for shuffling, augmentation and dropout / drop-path masks (it sets `trainer.seed`).
    public var seed: UInt64 = 0
    /// The split evaluated during training (keeping the best model by mean IoU); nil, or a data source
    /// without splits, trains without validation.
    public var validationSplit: SegmentationDataset.Split? = .validation
    /// How validation turns an image into scores: HF's processor size by default, or the paper's
    /// whole-image / sliding-window inference (`EvaluationMode`).
    public var evaluationMode: EvaluationMode = .resize
    /// Told (images done, images in total) during each validation pass.
    public var validationProgress: (@Sendable (Int, Int) -> Void)?
    /// Class names of the model being fine-tuned (a checkpoint folder's id2label, `ModelFile.classNames`),
    /// written to config.json when the data names none (a labels file or ADE's objectInfo150.csv win).
    public var classNames: [Int: String] = [:]

    /// Defaults as `segformer train`'s; set `trainer.maxSteps` or `trainer.epochs`.
    public init(outputDirectory: String) { trainer = TrainerOptions(outputDirectory: outputDirectory) }

    /// Checks every value before anything runs (the trainer's too), naming each by its command-line option.
    public func validate() throws {
        try OptionRange.atLeast(1, ["batch-size": batchSize, "crop": cropSize, "size": imageSize])
        try trainer.validate()
    }

    /// The data pipeline's options a checkpoint records beside the trainer's (`TrainerOptions.recordedOptions`).
    var recordedOptions: [String: String] {
        var recorded = ["batch-size": String(batchSize), "crop": String(cropSize), "size": String(imageSize), "seed": String(seed),
                        "augment": String(augment), "shuffle": String(shuffle), "val-split": validationSplit?.rawValue ?? "none"]
        // Recorded only when set, so checkpoints from before the option resume unchanged.
        if evaluationMode != .resize { recorded["eval-mode"] = evaluationMode.name }
        return recorded
    }
}

/// Fine-tunes a SegFormer model on a dataset, as `segformer train` does: the class count is read from
/// the model, the data is loaded, augmented and batched, and the `Trainer` trains (HF loss, AdamW with
/// warm-up and a schedule, 10× decode-head rate), evaluates, checkpoints and writes the model.
///
/// ```swift
/// var options = FineTuningOptions(outputDirectory: "run")
/// options.trainer.maxSteps = 100
/// let job = try FineTuning(model: Model.load(contentsOf: "b0.onnx"),
///                          data: SegmentationDataSource(.folders(images: "images", masks: "masks")), options: options)
/// try job.run()   // writes run/model.onnx and run/config.json
/// ```
public final class FineTuning {
    /// The trainer; set its `onLog` (progress) or `shouldStop` before `run`.
    public let trainer: Trainer
    /// The training samples.
    public let trainingSet: SegmentationDataset
    /// Classes the model predicts (the channel dimension of its logits).
    public let classCount: Int
    /// The names written to config.json: the data's, else the model's (`FineTuningOptions.classNames`).
    public let classNames: [Int: String]

    /// Prepares the job; nothing is trained or written yet.
    ///
    /// - Parameters:
    ///   - model: a `SegformerForSemanticSegmentation` export, or a model built by `segformer init`.
    ///   - data: where the dataset is (its labels are checked against the model's class count).
    /// - Throws: `SegFormerError.invalid` when the model is not a segmentation model or its class count is
    ///   unknown, when the model's static input size differs from the crop or image size, when an option is
    ///   out of range (`TrainerOptions.validate`), when the labels name another number of classes, or when
    ///   the data is malformed; `.io` when the output folder holds another run's outputs (and neither
    ///   `resume` nor `replaceExistingRun` is set), an output is one of `trainer.inputPaths`, `resume` finds
    ///   nothing to resume, or a folder cannot be read. A checkpoint that does not verify is reported by `run`.
    public init(model: Model, data: SegmentationDataSource, options: FineTuningOptions) throws {
        try options.validate()
        let size = options.imageSize, crop = options.cropSize
        classCount = try SegmentationModel.classCount(of: model)
        if let dims = model.graph.runtimeInputs.first?.type.shape, dims.count == 4, let h = dims[2].value, let w = dims[3].value,
           h != crop || w != crop || h != size || w != size {
            throw SegFormerError.invalid("the model takes \(h)×\(w) inputs (static in the export); use --crop \(h) --size \(h) (cropSize and imageSize), or export with dynamic height/width")
        }
        trainingSet = try data.dataset(split: .training, numLabels: classCount)
        try Classification.requireNames(options.classNames, fit: classCount, source: "the model's id2label")
        classNames = trainingSet.id2label.isEmpty ? options.classNames : trainingSet.id2label
        var processor = SegformerImageProcessor(height: size, width: size)
        processor.doReduceLabels = data.reducesLabels
        // Data-parallel: every process walks the global batches and keeps its slice of each. A partial last
        // batch cannot be split evenly, so it is dropped (and the data must fill one global batch).
        var batch = options.batchSize, shard: DataShard?
        if let group = options.trainer.processGroup {
            batch *= group.size
            shard = DataShard(index: group.rank, count: group.size)
            guard trainingSet.count >= batch else {
                throw SegFormerError.invalid("\(trainingSet.count) training images do not fill one global batch of \(group.size) processes × \(options.batchSize)")
            }
        }
        let loader = try SegmentationDataLoader(dataset: trainingSet, batchSize: batch, shuffle: options.shuffle,
                                                dropLast: trainingSet.count >= batch,
                                                augmentation: options.augment ? SegmentationAugmentation(cropSize: crop) : nil,
                                                processor: processor, seed: options.seed, shard: shard)
        var validation: SegmentationDataset?
        if data.hasSplits, let split = options.validationSplit {
            validation = try data.dataset(split: split, numLabels: classCount)
        }
        var evaluator = SegmentationEvaluator(processor: processor, numLabels: classCount, reduceLabels: data.reducesLabels)
        evaluator.progress = options.validationProgress
        evaluator.mode = options.evaluationMode
        var trainerOptions = options.trainer
        trainerOptions.jobOptions.merge(options.recordedOptions) { _, job in job }
        trainerOptions.seed = options.seed
        trainer = try Trainer(model: model, loader: loader, validation: validation,
                              evaluator: validation == nil ? nil : evaluator, options: trainerOptions)
    }

    /// Trains to the last step, then writes into the output folder `model.onnx` (the best by validation
    /// mean IoU when validating, else the last), `last.onnx`, `config.json` (`id2label`: `classNames`) and
    /// the checkpoint. Returns the path of `model.onnx`.
    ///
    /// - Throws: `TrainingStopped` when `trainer.shouldStop` ends training early; `SegFormerError.invalid`
    ///   for a non-finite loss or gradient (naming the step and parameter) or bad data; `.io` when writing fails.
    @discardableResult
    public func run() throws -> String {
        try trainer.run()
        let output = trainer.options.outputDirectory
        guard trainer.isWriter else { return output + "/model.onnx" }
        try ConfigJSON.write(numLabels: classCount, id2label: classNames, to: output + "/config.json")
        return output + "/model.onnx"
    }
}
