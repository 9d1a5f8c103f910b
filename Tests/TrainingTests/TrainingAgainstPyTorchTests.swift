import XCTest
import GraphIR
import Runtime
@testable import Training
import TestSupport

/// The whole training path against PyTorch: HF loss, the gradient of every initializer and the
/// parameters after 3 AdamW steps. Own fixture (tiny SegFormer, scripts/fixtures/make_tiny_segformer.py)
/// always; ../shared/reference/segformer-b0-train when present. Criteria from the reference README.
final class TrainingAgainstPyTorchTests: XCTestCase {

    /// - Parameter namesFrom: the export the expected bundles were named after; initializers of
    ///   `file` are matched to those names by content (every value is distinct), since each export
    ///   names its transposed MatMul weights differently.
    /// - Parameter prefusing: passes run over the imported graph before training (beyond `trainingPasses`).
    /// - Parameter adamW: whether to check the parameters after 3 AdamW steps too.
    func check(folder: String, model file: String = "model.op17.onnx", namesFrom reference: String = "model.op17.onnx",
               prefusing passes: [GraphPass] = [], adamW: Bool = true) throws {
        var model = try ONNXImporter.load(contentsOf: folder + "/" + file)
        if !passes.isEmpty { model.graph = try OptimizingPipeline.run(Passes.sorted(model.graph), opset: model.opset, passes: passes).graph }
        if file != reference {
            let named = try ONNXImporter.load(contentsOf: folder + "/" + reference).graph.initializers
            var rename: [String: String] = [:]
            for (name, t) in model.graph.initializers where t.dataType == .float && t.rank > 0 {
                if let match = named.first(where: { $0.value.bitwiseEqual(t) })?.key { rename[name] = match }
            }
            model.graph = renamingValues(model.graph, rename)
        }
        let x = try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor
        let labels = try ONNXImporter.readTensorFile(folder + "/batch/labels.pb").tensor
        let expectedLoss = try ONNXImporter.readTensorFile(folder + "/expected/loss.pb").tensor.pointer(Float.self)[0]
        let expectedGrads = try ONNXImporter.load(contentsOf: folder + "/expected/grads.onnx").graph.initializers
        let after = try ONNXImporter.load(contentsOf: folder + "/expected/after-3-adamw.onnx").graph.initializers

        let training = try TrainingSession(model: model, options: TrainingOptions(threads: 2))
        let initial = training.parameters.mapValues { $0.copy() }
        let (loss, grads) = try training.lossAndGradients(pixelValues: x, labels: labels)
        XCTAssertEqual(Double(loss), Double(expectedLoss), accuracy: 1e-5 * Double(abs(expectedLoss)), "loss")

        // ‖g − g_ref‖ ≤ 1e-3·‖g_ref‖ + 1e-7·‖all g_ref‖
        let total = expectedGrads.values.reduce(0.0) { $0 + pow(norm($1), 2) }.squareRoot()
        XCTAssertEqual(Set(grads.keys), Set(expectedGrads.keys), "every float initializer has a gradient")
        for (name, reference) in expectedGrads {
            guard let g = grads[name] else { continue }
            XCTAssertEqual(g.shape, reference.shape, name)
            let err = normOfDifference(g, reference)
            XCTAssertLessThanOrEqual(err, 1e-3 * norm(reference) + 1e-7 * total, "gradient of \(name)")
        }

        if !adamW { return }
        // 3 AdamW steps (lr 1e-3, wd 0.01): ‖p − p_ref‖ ≤ 1e-3·‖p_ref − p_initial‖ for tensors whose
        // gradient norm is above 1e-6 of the global norm.
        let optimizer = AdamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
        var g = grads
        for step in 0..<3 {
            if step > 0 { g = try training.lossAndGradients(pixelValues: x, labels: labels).gradients }
            try training.update(with: optimizer, gradients: g, learningRate: 1e-3)
        }
        for (name, reference) in after {
            guard let p = training.parameters[name], let p0 = initial[name], let gref = expectedGrads[name] else {
                XCTFail("no parameter \(name)"); continue
            }
            if norm(gref) <= 1e-6 * total { continue }
            XCTAssertLessThanOrEqual(normOfDifference(p, reference), 1e-3 * normOfDifference(reference, p0), "AdamW \(name)")
        }
    }

    func renamingValues(_ g: Graph, _ rename: [String: String]) -> Graph {
        var out = g
        out.initializers = [:]
        out.initializerOrder = []
        for name in g.initializerOrder { out.setInitializer(rename[name] ?? name, g.initializers[name]!) }
        for i in out.nodes.indices { out.nodes[i].inputs = out.nodes[i].inputs.map { rename[$0] ?? $0 } }
        return out
    }

    func testTinySegformerOpset17() throws {
        try check(folder: commonFixtures.path("tiny-segformer"))
    }

    func testTinySegformerDecomposedLayerNormOpset14() throws {
        try check(folder: commonFixtures.path("tiny-segformer"), model: "model.op14.onnx")
    }

    func testTinySegformerEagerAttentionOpset12() throws {
        try check(folder: commonFixtures.path("tiny-segformer"), model: "model.op12.onnx")
    }

    func testSharedSegformerB0() throws {
        try check(folder: try SharedFixtures.path("reference/segformer-b0-train"))
    }

    /// The check above trains MixFFN's convs fused (TokenDepthwiseConv is in `trainingPasses`), so the
    /// AdamW steps run through them: b0's eight convs, each with its GELU, in the training graph.
    func testSharedSegformerB0TrainsWithTokenDepthwiseConv() throws {
        let folder = try SharedFixtures.path("reference/segformer-b0-train")
        let training = try TrainingSession(model: try ONNXImporter.load(contentsOf: folder + "/model.op17.onnx"),
                                           options: TrainingOptions(threads: 2))
        let forwardConvs = training.gradientGraph.graph.nodes.filter {
            $0.opType == OpType.tokenDepthwiseConv && $0.attributes["activation"] != nil
        }
        XCTAssertEqual(forwardConvs.count, 8, "b0's eight MixFFN convs fused with their GELU")
    }

    /// Buffers are recycled between runs: a kernel that reads an output it did not fully write shows
    /// up as a second run differing from the first.
    func testRepeatedRunsGiveIdenticalGradients() throws {
        var folders = [try commonFixtures.path("tiny-segformer")]
        if let shared = SharedFixtures.pathIfPresent("reference/segformer-b0-train") { folders.append(shared) }
        for folder in folders {
            let model = try ONNXImporter.load(contentsOf: folder + "/model.op17.onnx")
            let x = try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor
            let labels = try ONNXImporter.readTensorFile(folder + "/batch/labels.pb").tensor
            let training = try TrainingSession(model: model)
            let first = try training.lossAndGradients(pixelValues: x, labels: labels)
            let firstCopy = first.gradients.mapValues { $0.copy() }
            for _ in 0..<2 {
                let again = try training.lossAndGradients(pixelValues: x, labels: labels)
                XCTAssertEqual(again.loss, first.loss, folder)
                for (name, g) in again.gradients where !g.bitwiseEqual(firstCopy[name]!) {
                    XCTFail("\(folder): gradient of \(name) differs between runs (max diff \(maxAbsDifference(g, firstCopy[name]!)))")
                }
            }
        }
    }

    /// A few steps on one batch at a useful learning rate must lower the loss. (The fixture's labels
    /// are random per pixel, which nothing can learn; here the top half is class 1, the bottom
    /// half class 3, with the fixture's ignored pixels kept.)
    func testLossDropsWhenTraining() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        let x = try commonFixtures.tensor("tiny-segformer/batch/pixel_values.pb")
        let labels = try commonFixtures.tensor("tiny-segformer/batch/labels.pb").copy()
        let lp = labels.pointer(Int64.self)
        for i in 0..<labels.count where lp[i] != 255 { lp[i] = (i % 1024) < 512 ? 1 : 3 }
        let training = try TrainingSession(model: model)
        let optimizer = AdamW(weightDecay: 0)
        var losses: [Float] = []
        for _ in 0..<10 {
            let (loss, grads) = try training.lossAndGradients(pixelValues: x, labels: labels)
            losses.append(loss)
            try training.update(with: optimizer, gradients: grads, learningRate: 3e-2)
        }
        XCTAssertLessThan(losses.last!, losses.first! * 0.5, "\(losses)")
    }
}
