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
        .library(name: "Distributed", targets: ["Distributed"]),
        .executable(name: "segformer", targets: ["segformer"]),
        .executable(name: "kernel-benchmarks", targets: ["kernel-benchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Reads pytorch_model.bin (a zip holding a pickle and the raw storages).
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    ],
    targets: [
        // System libraries and generated C.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Open MPI's C API (Debian: libopenmpi-dev); only data-parallel training calls it.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "CONNX", linkerSettings: [.linkedLibrary("protobuf-c")]),
        // Release builds compile C with -O2 (vectorised; no libm calls in these loops, so errno is moot).
        .target(name: "CKernels",
                linkerSettings: [.linkedLibrary("m")]),
        // oneDNN's matmul primitive for GEMMs with packed weights, over the libdnnl the runtime dlopens.
        .target(name: "COneDNN", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

        // The product's modules.
        .target(name: "GraphIR", dependencies: ["CONNX"]),
        .target(name: "Runtime", dependencies: ["GraphIR", "CBLAS", "CKernels", "COneDNN"]),
        // Images, the HF image processor, datasets, augmentation and masks: what a model is fed.
        .target(name: "SegmentationData", dependencies: ["GraphIR", "CImageCodecs"]),
        // SegFormer itself: the builder (HF initialisation), encoder loading, config.json, class count, and
        // HuggingFace checkpoint folders (safetensors, pytorch_model.bin) read and written without Python.
        .target(name: "SegformerModels", dependencies: ["GraphIR", "Runtime", "SegmentationData",
                                                        .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        // Autodiff, loss, optimizers, the training session and step, the trainer, checkpoints, evaluation.
        .target(name: "Training", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels"]),
        // Data-parallel training over MPI: the Training module's ProcessGroup on Open MPI (all-reduce, abort).
        .target(name: "Distributed", dependencies: ["Training", "CMPI"]),
        // End-to-end uses: classify/predict pipelines, the fine-tuning job, the demo, benchmark inputs.
        .target(name: "Applications", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training"]),
        .executableTarget(name: "segformer", dependencies: [
            "GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training", "Applications", "Distributed",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Kernel timings (not tests; SegformerModels and Training for the built-versus-export suite):
        // `swift run -c release kernel-benchmarks [filter]`.
        .executableTarget(name: "kernel-benchmarks", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training", "CBLAS"]),

        // Finds the tests' fixtures (bundled, or ../shared when present), reads their JSON strictly, and holds
        // the fixtures and numeric helpers the tests of the modules above share (one SegFormer export serves
        // the data, model, training and CLI tests; SwiftPM gives each test target only its own resources).
        .target(name: "TestSupport", dependencies: ["GraphIR"], path: "Tests/TestSupport",
                resources: [.copy("Fixtures")]),
        .testTarget(name: "GraphIRTests", dependencies: ["GraphIR", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RuntimeTests", dependencies: ["GraphIR", "Runtime", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SegmentationDataTests", dependencies: ["GraphIR", "SegmentationData", "Training", "TestSupport"]),
        .testTarget(name: "SegformerModelsTests", dependencies: ["GraphIR", "Runtime", "SegformerModels", "Training", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["GraphIR", "Runtime", "SegmentationData", "SegformerModels", "Training", "TestSupport"]),
        .testTarget(name: "ApplicationsTests", dependencies: ["GraphIR", "Runtime", "SegmentationData", "Applications", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
