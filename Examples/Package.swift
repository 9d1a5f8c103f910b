// swift-tools-version:6.0
// Two small apps that use SegFormerSwift as a library, through its public API only:
//   segment-image  model + picture → the classes present and a class-mask PNG
//   fine-tune      model + data folder + a few steps → a trained model
// Build and run from the repository root:
//   swift run --package-path Examples segment-image MODEL.onnx IMAGE [MASK.png]
import PackageDescription

let package = Package(
    name: "Examples",
    platforms: [.macOS(.v13)],
    dependencies: [
        // The package one folder up. `name:` fixes the identity the products below refer to, whatever
        // the checkout's folder is called.
        .package(name: "SegFormerSwift", path: ".."),
    ],
    targets: [
        .executableTarget(name: "segment-image", dependencies: [
            .product(name: "GraphIR", package: "SegFormerSwift"),
            .product(name: "Runtime", package: "SegFormerSwift"),
            .product(name: "SegmentationData", package: "SegFormerSwift"),
            .product(name: "Applications", package: "SegFormerSwift"),
        ]),
        .executableTarget(name: "fine-tune", dependencies: [
            .product(name: "GraphIR", package: "SegFormerSwift"),
            .product(name: "SegmentationData", package: "SegFormerSwift"),
            .product(name: "Applications", package: "SegFormerSwift"),
        ]),
    ]
)
