import XCTest
import GraphIR
import Runtime
import Training
import TestSupport

/// The optimizing passes leave a training graph alone: the decode-head passes rewrite constant
/// parameters only, and a training graph's are fed, not initializers; the canonicalising passes need
/// the intermediates of a LayerNorm / GELU read by the pattern alone, and the backward pass reads them.
/// (TrainingSession also turns the passes off, so frozen weights stay unmerged too.)
final class TrainingGraphPassesTests: XCTestCase {
    func testPassesFindNothingToRewriteInTheGradientGraph() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op12.onnx"))
        // The same model for inference: every pass rewrites it (LayerNorm and GELU are decomposed at opset 12).
        let inference = try XCTUnwrap(CompiledModel(model: model).optimization)
        XCTAssertTrue(inference.passes.allSatisfy(\.changedGraph), "\(inference)")

        let training = try TrainingSession(model: model)
        XCTAssertNil(training.session.compiled.optimization)
        let gradientModel = Model(graph: training.gradientGraph.graph, opsetImports: model.opsetImports)
        let cleaned = try CompiledModel(model: gradientModel, optimizingPasses: false).graph
        let (after, report) = try OptimizingPipeline.run(cleaned, opset: model.opset)
        XCTAssertFalse(report.passes.contains(where: \.changedGraph), "\(report)")
        XCTAssertEqual(after.nodes.count, cleaned.nodes.count)
    }
}
