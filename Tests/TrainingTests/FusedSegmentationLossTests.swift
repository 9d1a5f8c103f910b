import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training
import TestSupport

/// The fused HF loss (`UpsampledCrossEntropyLoss`) against the standard ops it replaces (Resize →
/// SoftmaxCrossEntropyLoss, both checked against PyTorch in NormGradientTests): same loss, same
/// d loss / d logits, for upsampling by odd factors, downsampling, an unchanged axis, several row
/// bands and ignored pixels; the same bits at every thread count; 0 and a zero gradient when every
/// pixel is ignored.
final class FusedSegmentationLossTests: XCTestCase {

    /// Loss and d loss / d logits of the HF loss on `logits`, through Autodiff.
    func lossAndGradient(_ logits: Tensor, _ labels: Tensor, fused: Bool, threads: Int = 2) throws -> (Float, Tensor) {
        var g = Graph(name: "loss")
        g.inputs = [ValueInfo(name: "logits_in", type: TensorType(.float, known: logits.shape))]
        g.nodes = [Node(name: "id", opType: OpType.identity, inputs: ["logits_in"], outputs: ["logits"])]
        g.outputs = [ValueInfo(name: "logits", type: TensorType(.float, known: logits.shape))]
        let (lg, loss) = try SegmentationLoss.appendHuggingFaceLoss(to: g, logits: "logits", labels: "labels", opset: 17, fused: fused)
        let gg = try Autodiff.differentiate(lg, opset: 17, loss: loss, parameters: ["logits_in"])
        let s = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]),
                            options: SessionOptions(threads: threads, optimizingPasses: false))
        let out = try s.run(["logits_in": logits, "labels": labels])
        return (try XCTUnwrap(out[loss]).pointer(Float.self)[0], try XCTUnwrap(out[gg.gradients[0].gradient]))
    }

    static func labels(_ shape: [Int], classes: Int, ignoredEvery: Int, seed: UInt64) -> Tensor {
        let u = GradientCheck.uniformValues(count: shape.reduce(1, *), seed: seed)
        return Tensor(u.enumerated().map { i, v in i % ignoredEvery == 2 ? Int64(255) : Int64(Double(classes) * (v + 1) / 2) % Int64(classes) },
                      shape: shape)
    }

    static func logits(_ shape: [Int], seed: UInt64) -> Tensor {
        Tensor(GradientCheck.uniformValues(count: shape.reduce(1, *), seed: seed).map { Float(4 * $0) }, shape: shape)
    }

    func testMatchesResizeThenCrossEntropy() throws {
        // (logits N×C×h×w, labels H×W): 4× like SegFormer with three bands, odd factors, downsampling,
        // one axis unchanged, and classes and width past whole 8×8 blocks (the kernel's transposes)
        let cases: [([Int], [Int])] = [([2, 5, 40, 6], [160, 24]), ([1, 7, 5, 3], [17, 13]), ([2, 3, 20, 12], [9, 7]),
                                       ([1, 4, 6, 5], [6, 11]), ([1, 19, 20, 21], [80, 84])]
        for (k, (shape, size)) in cases.enumerated() {
            let x = Self.logits(shape, seed: UInt64(k + 1))
            let y = Self.labels([shape[0]] + size, classes: shape[1], ignoredEvery: 5, seed: UInt64(k + 11))
            let (fusedLoss, fusedGrad) = try lossAndGradient(x, y, fused: true)
            let (loss, grad) = try lossAndGradient(x, y, fused: false)
            XCTAssertEqual(fusedLoss, loss, accuracy: 2e-6 * abs(loss), "case \(k) \(shape) → \(size): loss")
            XCTAssertEqual(fusedGrad.shape, shape)
            XCTAssertLessThanOrEqual(maxAbsDifference(fusedGrad, grad), 1e-6 * Float(norm(grad)), "case \(k) \(shape) → \(size): gradient")
            XCTAssertGreaterThan(norm(grad), 0)
        }
    }

    func testSameBitsAtEveryThreadCount() throws {
        let x = Self.logits([2, 6, 36, 9], seed: 3)
        let y = Self.labels([2, 144, 36], classes: 6, ignoredEvery: 7, seed: 4)
        let (loss1, grad1) = try lossAndGradient(x, y, fused: true, threads: 1)
        for threads in [2, 3, 5] {
            let (loss, grad) = try lossAndGradient(x, y, fused: true, threads: threads)
            XCTAssertEqual(loss.bitPattern, loss1.bitPattern, "\(threads) threads: loss")
            XCTAssertEqual(maxAbsDifference(grad, grad1), 0, "\(threads) threads: gradient")
        }
    }

    func testEveryPixelIgnoredGivesZeroLossAndGradient() throws {
        let x = Self.logits([2, 4, 5, 5], seed: 5)
        let y = Tensor([Int64](repeating: 255, count: 2 * 20 * 20), shape: [2, 20, 20])
        let (loss, grad) = try lossAndGradient(x, y, fused: true)
        XCTAssertEqual(loss, 0)
        XCTAssertEqual(norm(grad), 0)
    }

    func testLabelOutsideTheClassesIsAnErrorNamingIt() throws {
        let x = Self.logits([1, 3, 2, 2], seed: 6)
        let y = Tensor([Int64](repeating: 0, count: 15) + [3], shape: [1, 4, 4])
        XCTAssertThrowsError(try lossAndGradient(x, y, fused: true)) { error in
            XCTAssertTrue("\(error)".contains("label 3"), "\(error)")
            XCTAssertTrue("\(error)".contains("cross_entropy"), "\(error)")
        }
    }
}
