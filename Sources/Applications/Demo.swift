import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels
import Training

/// The whole fine-tuning job on an embedded default, for a machine with no data or hub at hand:
/// a seeded synthetic scene-parsing set (sky, grass, buildings, trees, roads, mountains, water in the
/// ADE20K id space) → a fresh SegFormer-b0 with HF initialisation → training with augmentation,
/// AdamW + warm-up + poly decay and a 10× head learning rate → evaluation with `evaluate`'s mean IoU →
/// overlays and the ONNX model.
public struct DemoOptions: Sendable {
    public var output: String
    public var trainImages = 320
    public var validationImages = 48
    public var imageSize = 128
    public var steps = 900
    public var batchSize = 8
    public var learningRate = 6e-4
    public var warmupSteps = 60
    public var seed: UInt64 = 0
    /// HF's train-mode graph (BatchNorm, classifier dropout, drop-path), as `segformer init` builds it,
    /// or the eval graph (BatchNorm folded, no dropout).
    public var form: SegformerBuilder.Form = .training
    public var threads: Int?
    public var overwrite = false
    public init(output: String) { self.output = output }
}

public enum Demo {
    public struct Outcome {
        public var result: MeanIoUResult
        public var labels: [Int: String]
        public var modelPath: String
        public var seconds: Double
    }

    public static func run(_ o: DemoOptions, log: @escaping (String) -> Void) throws -> Outcome {
        let fm = FileManager.default
        let started = Benchmark.now()
        try OutputGuard.requireEmptyFolder(o.output, overwrite: o.overwrite)
        let dataDir = o.output + "/data"
        log("generating \(o.trainImages) + \(o.validationImages) synthetic scenes (\(o.imageSize)×\(o.imageSize)) in \(dataDir)")
        _ = try SyntheticScenes.generate(into: dataDir, trainCount: o.trainImages, validationCount: o.validationImages,
                                         width: o.imageSize, height: o.imageSize, seed: o.seed, overwrite: true, progress: nil)

        let labels = Dictionary(uniqueKeysWithValues: SyntheticScenes.labels.map { ($0.index, $0.name) })
        let numLabels = labels.count
        let config = try SegformerConfig.variant("b0", numLabels: numLabels, id2label: labels)
        // By default HF's training graph, as `segformer init` builds it: BatchNorm on batch statistics,
        // classifier dropout 0.1, drop-path 0.1; the trainer writes model.onnx in inference form.
        let model = try SegformerBuilder.build(config: config, seed: o.seed, form: o.form)
        log("built SegFormer-b0 with \(numLabels) classes, \(model.graph.parameterCount) parameters (HF initialisation, \(o.form == .training ? "HF's train-mode graph" : "eval graph"))")

        func dataset(_ split: SegmentationDataset.Split) throws -> SegmentationDataset {
            let d = try SegmentationDataset(adeRoot: dataDir, split: split, numLabels: 255)
            d.labelLookup = SyntheticScenes.trainingLookup   // ADE ids → the compact classes, "other" → 255
            d.maxLabel = numLabels - 1
            d.id2label = labels
            return d
        }
        let train = try dataset(.training), validation = try dataset(.validation)
        var processor = SegformerImageProcessor(height: o.imageSize, width: o.imageSize)
        processor.doReduceLabels = false
        let augmentation = SegmentationAugmentation(cropSize: o.imageSize, scale: (o.imageSize * 4, o.imageSize),
                                                    ratioRange: 0.75...1.5)
        let loader = try SegmentationDataLoader(dataset: train, batchSize: o.batchSize, shuffle: true, dropLast: true,
                                                augmentation: augmentation, processor: processor, seed: o.seed)
        var options = TrainerOptions(outputDirectory: o.output)
        options.maxSteps = o.steps
        options.learningRate = o.learningRate
        options.schedule = .poly
        options.warmupSteps = o.warmupSteps
        options.evaluateEvery = max(1, o.steps / 3)
        options.checkpointEvery = max(1, o.steps / 3)
        options.logJSONPath = o.output + "/train-log.jsonl"
        options.threads = o.threads
        options.replaceExistingRun = o.overwrite
        let evaluator = SegmentationEvaluator(processor: processor, numLabels: numLabels, reduceLabels: false)
        let trainer = try Trainer(model: model, loader: loader, validation: validation, evaluator: evaluator, options: options)
        trainer.onLog = { entry, line in
            if entry.step % 25 == 0 || entry.step == o.steps || entry.mIoU != nil { log(line) }
        }
        log("training \(o.steps) steps of \(o.batchSize) images")
        try trainer.run()

        let modelPath = o.output + "/model.onnx"
        let session = try Session(model: try ONNXImporter.load(contentsOf: modelPath),
                                           options: SessionOptions(threads: o.threads))
        let result = try evaluator.evaluate(session: session, dataset: validation)

        // Overlays of a few validation scenes, and the config of the trained model.
        let overlays = o.output + "/overlays"
        try fm.createDirectory(atPath: overlays, withIntermediateDirectories: true)
        let predictor = try SegmentationPredictor(session: session, size: o.imageSize)
        for sample in validation.samples.prefix(6) {
            let p = try predictor.predict(imageAt: sample.imagePath)
            let name = ((sample.imagePath as NSString).lastPathComponent as NSString).deletingPathExtension
            try Segmentation.writeOverlayPNG(image: p.image, mask: p.mask, to: "\(overlays)/\(name).overlay.png")
        }
        try ConfigJSON.write(numLabels: numLabels, id2label: labels, to: o.output + "/config.json")
        return Outcome(result: result, labels: labels, modelPath: modelPath, seconds: (Benchmark.now() - started) / 1000)
    }
}
