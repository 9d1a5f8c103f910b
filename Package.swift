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
        .executable(name: "kernel-benchmarks", targets: ["kernel-benchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries and generated C.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CONNX", linkerSettings: [.linkedLibrary("protobuf-c")]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])],
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
        // Kernel timings (not tests): `swift run -c release kernel-benchmarks [filter]`.
        .executableTarget(name: "kernel-benchmarks", dependencies: ["GraphIR", "Runtime", "Training", "CBLAS"]),

        // Finds the tests' fixtures (bundled, or ../shared when present) and reads their JSON strictly.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "GraphIRTests", dependencies: ["GraphIR", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RuntimeTests", dependencies: ["GraphIR", "Runtime", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["GraphIR", "Runtime", "Training", "TestSupport"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
