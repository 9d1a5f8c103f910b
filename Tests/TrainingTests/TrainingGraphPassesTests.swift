import XCTest
import GraphIR
import Runtime
@testable import Training
import SegformerModels
import TestSupport

/// The two stages of a training graph's optimisation: `trainingPasses` over the forward graph before
/// autodiff, `gradientGraphPasses` over the gradient graph after it.
final class TrainingGraphPassesTests: XCTestCase {
    /// The inference pipeline finds nothing more in a gradient graph as autodiff wrote it: its forward
    /// part went through the training passes (decode-head algebra included) before autodiff; the
    /// canonicalising passes need the intermediates of a LayerNorm / GELU read by the pattern alone, and
    /// the backward pass reads them. The exceptions: fuse-conv-to-tokens (a forward conv whose output
    /// becomes tokens: the backward reads the conv's input and the output's gradient, not the output),
    /// and fuse-matmul-epilogue, which `gradientGraphPasses` runs in its gradient-graph form.
    func testInferencePassesFindOnlyTheGradientGraphFusionsToDo() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op12.onnx"))
        // The same model for inference: every pass rewrites it (LayerNorm and GELU are decomposed at
        // opset 12) but fuse-resize-add, which finds no Resize that fuse-resize-sum left.
        let inference = try XCTUnwrap(CompiledModel(model: model).optimization)
        XCTAssertTrue(inference.passes.filter { $0.pass != "fuse-resize-add" }.allSatisfy(\.changedGraph), "\(inference)")

        let training = try TrainingSession(model: model)
        let gradientModel = Model(graph: training.gradientGraph.graph, opsetImports: model.opsetImports)
        let cleaned = try CompiledModel(model: gradientModel, optimizingPasses: false).graph
        let (after, report) = try OptimizingPipeline.run(cleaned, opset: model.opset)
        XCTAssertFalse(report.passes.contains { $0.changedGraph && !["fuse-conv-to-tokens", "fuse-matmul-epilogue"].contains($0.pass) },
                       "\(report)")
        let channelsLast = after.opCounts[fusedDomain + "." + OpType.channelsLastConv] ?? 0
        XCTAssertEqual(after.opCounts[OpType.conv], cleaned.opCounts[OpType.conv].map { $0 - channelsLast }, "\(report)")
    }

    /// The session runs `gradientGraphPasses` over its gradient graph and reports them; every linear
    /// layer's MatMul takes in its bias Add (a parameter) and, where the graph has one, its residual Add.
    func testTrainingSessionRunsTheGradientGraphPasses() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        let training = try TrainingSession(model: model)
        let report = try XCTUnwrap(training.session.compiled.optimization)
        XCTAssertEqual(report.passes.map(\.pass), OptimizingPipeline.gradientGraphPasses.map(\.name))
        let fused = report.after[fusedDomain + "." + OpType.fusedMatMul] ?? 0
        XCTAssertGreaterThan(fused, 0, "\(report)")
        XCTAssertEqual((report.before[OpType.matMul] ?? 0) - (report.after[OpType.matMul] ?? 0), fused, "\(report)")
        XCTAssertLessThan(report.after[OpType.add] ?? 0, report.before[OpType.add] ?? 0, "\(report)")

        let off = try TrainingSession(model: model, options: TrainingOptions(optimizingPasses: false))
        XCTAssertNil(off.session.compiled.optimization, "bench --train --no-optimize: no passes")
    }

    /// The gradient-graph passes keep the forward's bits (the b0 training reference's AdamW check sits
    /// on a Relu kink) and leave the backward as autodiff wrote it: on b0 in train form at batch 2,
    /// 512² — the shapes whose fused products run in row blocks spread over the threads — the loss,
    /// the BatchNorm statistics and every gradient are the same bits with the passes and without, at
    /// 1, 2 and 3 threads.
    func testGradientGraphPassesKeepB0sStepBitForBit() throws {
        let model = try SegformerBuilder.build(config: .variant("b0"), seed: 3, form: .training)
        let pixels = try Benchmark.randomTensor(.float, shape: [2, 3, 512, 512], seed: 5)
        let labels = Tensor(uninitialized: .int64, shape: [2, 512, 512])
        for i in 0..<labels.count { labels.pointer(Int64.self)[i] = i % 11 == 0 ? 255 : Int64((i / 700) % 150) }
        for threads in [1, 2, 3] {
            let training = try TrainingSession(model: model, options: TrainingOptions(threads: threads, seed: 7))
            XCTAssertGreaterThan(training.session.compiled.optimization?.after[fusedDomain + "." + OpType.fusedMatMul] ?? 0, 40)
            let unfused = try Session(model: Model(graph: training.gradientGraph.graph, opsetImports: model.opsetImports),
                                      options: SessionOptions(threads: threads, optimizingPasses: false))
            unfused.context.random = RandomStream(seed: 7)
            let feeds = training.feeds(pixelValues: pixels, labels: labels)
            let (fusedOut, expected) = (try training.session.run(feeds), try unfused.run(feeds))
            XCTAssertEqual(Set(fusedOut.keys), Set(expected.keys))
            for (name, value) in expected where !(fusedOut[name]?.bitwiseEqual(value) ?? false) {
                XCTFail("\(threads) threads: \(name) differs (max \(fusedOut[name].map { maxAbsDifference($0, value) } ?? .nan))")
            }
        }
    }
}
