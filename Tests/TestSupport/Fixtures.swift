import Foundation
import XCTest
import GraphIR

// Where tests find their data. Two kinds, treated differently:
// - bundled fixtures: a Fixtures folder copied into a resource bundle — GraphIRTests' and RuntimeTests'
//   own, and this target's (`commonFixtures`) for the data, model, training and CLI tests. They are
//   part of the repository, so a missing one is an error that fails the test;
// - ../shared beside the checkout (PyTorch references, real exports, ONNX cases): optional, so the
//   checks that use it are skipped when it is absent.

/// The Fixtures folder of one test target.
public struct BundledFixtures: Sendable {
    public let root: URL

    /// The fixtures of the test target whose resource bundle this is: pass `Bundle.module`.
    public init(_ bundle: Bundle) {
        root = (bundle.resourceURL ?? bundle.bundleURL).appendingPathComponent("Fixtures")
    }

    /// The path of `relative` inside Fixtures; throws (failing the test) when nothing is there.
    public func path(_ relative: String) throws -> String {
        let path = root.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else { throw MissingFixture(path: path) }
        return path
    }

    public func data(_ relative: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path(relative)))
    }

    /// A TensorProto (.pb) fixture.
    public func tensor(_ relative: String) throws -> Tensor { try ONNXImporter.readTensorFile(path(relative)).tensor }
}

/// Tests/TestSupport/Fixtures: the fixtures the SegmentationData, SegformerModels, Training and
/// Applications tests share (one SegFormer export serves them all, and SwiftPM gives a test target
/// only its own resources, so they live in this target's bundle).
public let commonFixtures = BundledFixtures(Bundle.module)

/// The build's products folder (where the `segformer` binary is), beside this target's resource bundle.
public var productsDirectory: URL { Bundle.module.bundleURL.deletingLastPathComponent() }

/// A bundled fixture that is not where the test expects it.
public struct MissingFixture: Error, CustomStringConvertible {
    public let path: String
    public var description: String { "bundled fixture missing: \(path)" }
}

/// ../shared next to the package root.
public enum SharedFixtures {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()   // Tests/TestSupport/Fixtures.swift → package root
        .deletingLastPathComponent().appendingPathComponent("shared")

    /// The path of `relative` inside ../shared, or nil when it is not there.
    public static func pathIfPresent(_ relative: String) -> String? {
        let path = root.appendingPathComponent(relative).path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// The path of `relative` inside ../shared; skips the calling test (naming the path) when it is not there.
    public static func path(_ relative: String) throws -> String {
        guard let path = pathIfPresent(relative) else {
            throw XCTSkip("\(root.appendingPathComponent(relative).path) not present (../shared is optional)")
        }
        return path
    }
}
