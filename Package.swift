// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "SegFormerSwift",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "GraphIR", targets: ["GraphIR"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        .library(name: "SegmentationData", targets: ["SegmentationData"]),
        .library(name: "SegformerModels", targets: ["SegformerModels"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Applications", targets: ["Applications"]),
        .executable(name: "segformer", targets: ["segformer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries and generated C.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CONNX", linkerSettings: [.linkedLibrary("protobuf-c")]),
        // Release builds compile C with -O2 (vectorised; no libm calls in these loops, so errno is moot).
        .target(name: "CKernels",
                linkerSettings: [.linkedLibrary("m")]),
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

        // The product's modules.
        .target(name: "GraphIR", dependencies: ["CONNX"]),
        .target(name: "Runtime", dependencies: ["GraphIR", "CBLAS", "CKernels"]),
        // Images, the HF image processor, datasets, augmentation and masks: what a model is fed.
        .target(name: "SegmentationData", dependencies: ["GraphIR", "CImageCodecs"]),
        // SegFormer itself: the builder (HF initialisation), encoder loading, config.json, class count.
        .target(name: "SegformerModels", dependencies: ["GraphIR", "Runtime"]),
        // Autodiff, loss, optimizers, the training session and step, the trainer, checkpoints, evaluation.
        .target(name: "Training", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels"]),
        // End-to-end uses: classify/predict pipelines, the fine-tuning job, the demo, benchmark inputs.
        .target(name: "Applications", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training"]),
        .executableTarget(name: "segformer", dependencies: [
            "GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training", "Applications",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "GraphIRTests", dependencies: ["GraphIR"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RuntimeTests", dependencies: ["GraphIR", "Runtime"], resources: [.copy("Fixtures")]),
        // The fixtures and helpers the tests of the modules above share (one SegFormer export serves the
        // model, training and CLI tests; SwiftPM gives each test target only its own resources).
        .target(name: "SegFormerTestSupport", dependencies: ["GraphIR"], path: "Tests/SegFormerTestSupport",
                resources: [.copy("Fixtures")]),
        .testTarget(name: "SegmentationDataTests", dependencies: ["GraphIR", "SegmentationData", "Training", "SegFormerTestSupport"]),
        .testTarget(name: "SegformerModelsTests", dependencies: ["GraphIR", "Runtime", "SegformerModels", "Training", "SegFormerTestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training", "SegFormerTestSupport"]),
        .testTarget(name: "ApplicationsTests", dependencies: ["GraphIR", "Runtime", "SegmentationData", "Applications", "SegFormerTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
