import Foundation
import GraphIR

/// Paths of the test fixtures and of ../shared when it exists.
public enum Fixtures {
    /// The folder the fixtures are copied to at build time.
    public static var root: String { Bundle.module.resourcePath! + "/Fixtures" }
    public static func path(_ relative: String) -> String { root + "/" + relative }
    /// The build's products folder (where the `segformer` binary is), beside the fixtures' bundle.
    public static var productsDirectory: URL { Bundle.module.bundleURL.deletingLastPathComponent() }

    /// The shared reference folder (../shared next to the checkout), when present.
    public static var shared: String? {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }   // Tests/SegFormerTestSupport/Fixtures.swift → repo root
        let candidate = dir.deletingLastPathComponent().appendingPathComponent("shared").path
        return FileManager.default.fileExists(atPath: candidate + "/reference") ? candidate : nil
    }

    public static func tensor(_ relative: String) throws -> Tensor { try ONNXImporter.readTensorFile(path(relative)).tensor }
}

/// Max |a − b| over two float tensors of the same shape.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
    let x = a.pointer(Float.self), y = b.pointer(Float.self)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(x[i] - y[i])) }
    return m
}

/// Euclidean norm of a float tensor, in Double.
public func norm(_ t: Tensor) -> Double {
    let p = t.pointer(Float.self)
    var s = 0.0
    for i in 0..<t.count { s += Double(p[i]) * Double(p[i]) }
    return s.squareRoot()
}

public func normOfDifference(_ a: Tensor, _ b: Tensor) -> Double {
    let x = a.pointer(Float.self), y = b.pointer(Float.self)
    var s = 0.0
    for i in 0..<a.count { let d = Double(x[i]) - Double(y[i]); s += d * d }
    return s.squareRoot()
}
