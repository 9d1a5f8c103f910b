import XCTest
import GraphIR
import Runtime
import Training
import TestSupport

/// The optimizing passes rewrite constants only, so they leave a training graph alone: its parameters
/// are fed, not initializers. (TrainingSession also turns the passes off, so frozen weights stay
/// unmerged too.)
final class TrainingGraphPassesTests: XCTestCase {
    func testPassesFindNothingToRewriteInTheGradientGraph() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        // The same model for inference: the decode-head passes do rewrite it.
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
