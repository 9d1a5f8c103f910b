import XCTest
import GraphIR
import Runtime
import Training
import TestSupport

/// The optimizing passes find nothing more in a gradient graph: its forward part went through the
/// training passes (decode-head algebra included) before autodiff; the canonicalising passes need the
/// intermediates of a LayerNorm / GELU read by the pattern alone, and the backward pass reads them.
/// (TrainingSession compiles the gradient graph with the pipeline off anyway.) The exception is
/// fuse-conv-to-tokens: a forward conv whose output becomes tokens still does (the backward reads the
/// conv's input and the output's gradient, not the output), and it computes the same.
final class TrainingGraphPassesTests: XCTestCase {
    func testPassesFindNothingToRewriteInTheGradientGraph() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op12.onnx"))
        // The same model for inference: every pass rewrites it (LayerNorm and GELU are decomposed at
        // opset 12) but fuse-resize-add, which finds no Resize that fuse-resize-sum left.
        let inference = try XCTUnwrap(CompiledModel(model: model).optimization)
        XCTAssertTrue(inference.passes.filter { $0.pass != "fuse-resize-add" }.allSatisfy(\.changedGraph), "\(inference)")

        let training = try TrainingSession(model: model)
        XCTAssertNil(training.session.compiled.optimization)
        let gradientModel = Model(graph: training.gradientGraph.graph, opsetImports: model.opsetImports)
        let cleaned = try CompiledModel(model: gradientModel, optimizingPasses: false).graph
        let (after, report) = try OptimizingPipeline.run(cleaned, opset: model.opset)
        XCTAssertFalse(report.passes.contains { $0.changedGraph && $0.pass != "fuse-conv-to-tokens" }, "\(report)")
        let channelsLast = after.opCounts[fusedDomain + "." + OpType.channelsLastConv] ?? 0
        XCTAssertEqual(after.opCounts[OpType.conv], cleaned.opCounts[OpType.conv].map { $0 - channelsLast }, "\(report)")
    }
}
