// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "SegFormerSwift",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "GraphIR", targets: ["GraphIR"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        .library(name: "Training", targets: ["Training"]),
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
        .target(name: "Training", dependencies: ["GraphIR", "Runtime", "CImageCodecs"]),
        .executableTarget(name: "segformer", dependencies: [
            "GraphIR", "Runtime", "Training",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "GraphIRTests", dependencies: ["GraphIR"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RuntimeTests", dependencies: ["GraphIR", "Runtime"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["GraphIR", "Runtime", "Training"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
