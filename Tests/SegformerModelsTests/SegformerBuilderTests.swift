import Foundation
import XCTest
import GraphIR
import Runtime
@testable import SegformerModels
import Training
import TestSupport

/// The natively built SegFormer graph against HuggingFace (fixtures: scripts/fixtures/make_builder_fixtures.py).
final class SegformerBuilderTests: XCTestCase {
    /// The fixture's tiny config (2 stages, depths 2/1, 5 labels).
    static let tiny = SegformerConfig(hiddenSizes: [8, 16], depths: [2, 1], numAttentionHeads: [1, 2], srRatios: [2, 1],
                                      patchSizes: [7, 3], strides: [4, 2], mlpRatios: [2, 2], decoderHiddenSize: 16,
                                      numLabels: 5)

    static func isParameter(_ name: String) -> Bool { name.hasPrefix("segformer.") || name.hasPrefix("decode_head.") }

    func testLogitsMatchPyTorchWithHFWeights() throws {
        var model = try SegformerBuilder.build(config: Self.tiny, seed: 1)
        let params = try ONNXImporter.load(contentsOf: commonFixtures.path("builder/params.onnx")).graph.initializers
        let ours = model.graph.initializers.keys.filter(Self.isParameter)
        XCTAssertEqual(Set(ours), Set(params.keys), "parameter names equal HF's")
        for (name, t) in params {
            let mine = try XCTUnwrap(model.graph.initializers[name], name)
            XCTAssertEqual(mine.shape, t.shape, name)
            model.graph.setInitializer(name, t)
        }
        let x = try commonFixtures.tensor("builder/input.pb")
        let expected = try commonFixtures.tensor("builder/logits.pb")
        let session = try Session(model: model, options: SessionOptions(threads: 2))
        let logits = try XCTUnwrap(session.run(["pixel_values": x])["logits"])
        XCTAssertEqual(logits.shape, [2, 5, 9, 11])
        XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-5)

        // The ONNX file we write reads back to the same function.
        let path = NSTemporaryDirectory() + "segformer-builder-\(getpid()).onnx"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ONNXExporter.write(model, to: path)
        let again = try Session(model: ONNXImporter.load(contentsOf: path)).run(["pixel_values": x])["logits"]!
        XCTAssertLessThanOrEqual(maxAbsDifference(again, expected), 1e-5)

        // For the onnxruntime check (`make_builder_fixtures.py --check DIR`): write the files there.
        if let dir = ProcessInfo.processInfo.environment["SEGFORMER_BUILDER_EXPORT_DIR"] {
            try ONNXExporter.write(model, to: dir + "/tiny-built.onnx")
            try ONNXExporter.write(SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150), seed: 5),
                                   to: dir + "/b0-built.onnx")
        }
    }

    func testSymbolicShapesInferred() throws {
        let model = try SegformerBuilder.build(config: Self.tiny)
        let result = try TypeInference.infer(model.graph, opset: model.opset)
        XCTAssertTrue(result.unknown.isEmpty, "\(result.unknown)")
        let logits = try XCTUnwrap(result.types["logits"]?.shape)
        XCTAssertEqual(logits.count, 4)
        XCTAssertEqual(logits[0], .symbol("batch"))
        XCTAssertEqual(logits[1], .known(5))
    }

    /// HF SegformerForSemanticSegmentation(SegformerConfig(num_labels=150)) has 3,752,694 parameters
    /// (transformers 5.24); folding the decode head's BatchNorm removes its weight and bias (2·256) and
    /// gives linear_fuse a bias (256): 3,752,438.
    func testB0ParameterCount() throws {
        let model = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150))
        let count = model.graph.initializers.filter { Self.isParameter($0.key) }.reduce(0) { $0 + $1.value.count }
        XCTAssertEqual(count, 3_752_694 - 2 * 256 + 256)
        XCTAssertEqual(model.graph.initializers["segformer.stages.0.blocks.0.attention.q_proj.weight"]?.shape, [32, 32])
        XCTAssertEqual(model.graph.initializers["segformer.stages.3.blocks.1.mlp.fc1.weight"]?.shape, [256, 1024])
        XCTAssertEqual(model.graph.initializers["decode_head.linear_fuse.weight"]?.shape, [256, 1024, 1, 1])
        XCTAssertEqual(model.graph.initializers["decode_head.classifier.weight"]?.shape, [150, 256, 1, 1])
        XCTAssertEqual(try SegformerConfig.variant("b2").decoderHiddenSize, 768)
        XCTAssertEqual(try SegformerConfig.variant("mit-b5").depths, [3, 6, 40, 3])
        XCTAssertThrowsError(try SegformerConfig.variant("b9"))
    }

    /// Same statistics as HF's `_init_weights`: weights normal(0, 0.02), biases 0, LayerNorm 1/0; seeded.
    func testInitialisationStatistics() throws {
        let model = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150), seed: 7)
        let inits = model.graph.initializers
        func stats(_ name: String) throws -> (mean: Double, std: Double) {
            let t = try XCTUnwrap(inits[name], name), p = t.pointer(Float.self)
            var s = 0.0, s2 = 0.0
            for i in 0..<t.count { s += Double(p[i]); s2 += Double(p[i]) * Double(p[i]) }
            let mean = s / Double(t.count)
            return (mean, (s2 / Double(t.count) - mean * mean).squareRoot())
        }
        for name in ["segformer.stages.3.blocks.1.mlp.fc1.weight", "decode_head.linear_fuse.weight",
                     "segformer.stages.0.blocks.0.attention.sequence_reduction.sequence_reduction.weight"] {
            let (mean, std) = try stats(name)
            XCTAssertEqual(std, 0.02, accuracy: 0.0005, name)
            XCTAssertEqual(mean, 0, accuracy: 0.0005, name)
        }
        XCTAssertEqual(try stats("segformer.stages.1.blocks.0.attention.q_proj.bias").std, 0)
        XCTAssertEqual(try stats("segformer.stages.1.layer_norm.weight").mean, 1)
        XCTAssertEqual(try stats("segformer.stages.1.layer_norm.bias").std, 0)
        // Same seed, same weights; another seed, other weights.
        let same = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150), seed: 7)
        let other = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150), seed: 8)
        let key = "decode_head.classifier.weight"
        XCTAssertTrue(same.graph.initializers[key]!.bitwiseEqual(inits[key]!))
        XCTAssertFalse(other.graph.initializers[key]!.bitwiseEqual(inits[key]!))
    }

    func testBadConfigThrows() {
        var c = Self.tiny
        c.depths = [1]
        XCTAssertThrowsError(try SegformerBuilder.build(config: c)) { XCTAssertTrue("\($0)".contains("depths"), "\($0)") }
        c = Self.tiny
        c.numAttentionHeads = [3, 2]
        XCTAssertThrowsError(try SegformerBuilder.build(config: c)) { XCTAssertTrue("\($0)".contains("heads"), "\($0)") }
    }
}

/// Loading pretrained weights from real exports (the tiny fixtures of make_tiny_segformer.py).
final class SegformerWeightLoadingTests: XCTestCase {
    /// The config of Fixtures/tiny-segformer and tiny-classifier.
    static func tinyConfig(labels: Int) -> SegformerConfig {
        SegformerConfig(hiddenSizes: [8, 16], depths: [1, 1], numAttentionHeads: [1, 2], srRatios: [2, 1],
                        patchSizes: [7, 3], strides: [4, 2], mlpRatios: [2, 2], decoderHiddenSize: 16, numLabels: labels)
    }

    /// All weights of a real op17 export (anonymous transposed MatMul weights included) give PyTorch's logits.
    func testFullExportLoadsAndMatchesPyTorch() throws {
        var model = try SegformerBuilder.build(config: Self.tinyConfig(labels: 5), seed: 3)
        let export = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        let n = try SegformerBuilder.loadParameters(from: export, into: &model, scopes: ["segformer.", "decode_head."])
        XCTAssertEqual(n, model.graph.initializers.keys.filter(SegformerBuilderTests.isParameter).count)
        let x = try commonFixtures.tensor("tiny-segformer/test_data_set_0/input_0.pb")
        let expected = try commonFixtures.tensor("tiny-segformer/test_data_set_0/output_0.pb")
        let logits = try Session(model: model).run(["pixel_values": x])["logits"]!
        XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-5)
    }

    /// The built graph trains: loaded with the tiny export's weights, its HF loss and the gradient of
    /// every parameter equal PyTorch's (criteria of TrainingAgainstPyTorchTests).
    func testBuiltGraphGivesPyTorchLossAndGradients() throws {
        let folder = try commonFixtures.path("tiny-segformer")
        var model = try SegformerBuilder.build(config: Self.tinyConfig(labels: 5), seed: 3)
        let export = try ONNXImporter.load(contentsOf: folder + "/model.op17.onnx")
        try SegformerBuilder.loadParameters(from: export, into: &model, scopes: ["segformer.", "decode_head."])
        let x = try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor
        let labels = try ONNXImporter.readTensorFile(folder + "/batch/labels.pb").tensor
        let expectedLoss = try ONNXImporter.readTensorFile(folder + "/expected/loss.pb").tensor.pointer(Float.self)[0]
        let expectedGrads = try ONNXImporter.load(contentsOf: folder + "/expected/grads.onnx").graph.initializers
        // The bundle is named after the export's initializers; all values are distinct, so match by content.
        var exportName: [String: String] = [:]
        for (name, t) in model.graph.initializers where SegformerBuilderTests.isParameter(name) {
            exportName[name] = export.graph.initializers.first { $0.value.shape == t.shape && $0.value.bitwiseEqual(t) }?.key
        }
        let training = try TrainingSession(model: model, options: TrainingOptions(threads: 2))
        let (loss, grads) = try training.lossAndGradients(pixelValues: x, labels: labels)
        XCTAssertEqual(Double(loss), Double(expectedLoss), accuracy: 1e-5 * Double(abs(expectedLoss)), "loss")
        let total = expectedGrads.values.reduce(0.0) { $0 + pow(norm($1), 2) }.squareRoot()
        var compared = 0
        for (name, g) in grads where SegformerBuilderTests.isParameter(name) {
            guard let key = exportName[name], let reference = expectedGrads[key] else { XCTFail("no reference for \(name)"); continue }
            XCTAssertEqual(g.shape, reference.shape, name)
            XCTAssertLessThanOrEqual(normOfDifference(g, reference), 1e-3 * norm(reference) + 1e-7 * total, "gradient of \(name)")
            compared += 1
        }
        XCTAssertEqual(compared, expectedGrads.count)
    }

    func testEncoderFromClassifierExport() throws {
        var model = try SegformerBuilder.build(config: Self.tinyConfig(labels: 3), seed: 3)
        let head = model.graph.initializers["decode_head.classifier.weight"]!
        let export = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-classifier/model.onnx"))
        let n = try SegformerBuilder.loadEncoder(from: export, into: &model)
        let encoder = model.graph.initializers.keys.filter { $0.hasPrefix("segformer.") }
        XCTAssertEqual(n, encoder.count)
        XCTAssertTrue(model.graph.initializers["decode_head.classifier.weight"]!.bitwiseEqual(head), "head untouched")
        XCTAssertTrue(model.graph.initializers["segformer.stages.0.patch_embeddings.proj.weight"]!
            .bitwiseEqual(export.graph.initializers["m.segformer.stages.0.patch_embeddings.proj.weight"]!))
        // q_proj's weight is an anonymous MatMul operand in the export.
        let q = export.graph.nodes.first { $0.name.hasSuffix("stages.1/blocks.0/attention/q_proj/MatMul") }!
        XCTAssertTrue(model.graph.initializers["segformer.stages.1.blocks.0.attention.q_proj.weight"]!
            .bitwiseEqual(export.graph.initializers[q.inputs[1]]!))
    }

    func testEncoderOfAnotherVariantIsRejected() throws {
        let export = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-classifier/model.onnx"))
        var b0 = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 3))
        XCTAssertThrowsError(try SegformerBuilder.loadEncoder(from: export, into: &b0)) { e in
            XCTAssertTrue("\(e)".contains("do not fit"), "\(e)")
        }
        var deeper = Self.tinyConfig(labels: 3)
        deeper.depths = [2, 1]
        var model = try SegformerBuilder.build(config: deeper)
        XCTAssertThrowsError(try SegformerBuilder.loadEncoder(from: export, into: &model)) { e in
            XCTAssertTrue("\(e)".contains("missing") && "\(e)".contains("blocks.1"), "\(e)")
        }
        var model2 = try SegformerBuilder.build(config: Self.tinyConfig(labels: 3))
        XCTAssertThrowsError(try SegformerBuilder.loadEncoder(from: Model(graph: Graph()), into: &model2))
    }

    func testLegacyNamesAreTranslated() {
        let cases = [
            ("segformer.encoder.patch_embeddings.2.proj.weight", "segformer.stages.2.patch_embeddings.proj.weight"),
            ("segformer.encoder.patch_embeddings.0.layer_norm.bias", "segformer.stages.0.patch_embeddings.layer_norm.bias"),
            ("segformer.encoder.block.1.0.layer_norm_1.weight", "segformer.stages.1.blocks.0.layernorm_before.weight"),
            ("segformer.encoder.block.0.1.attention.self.query.weight", "segformer.stages.0.blocks.1.attention.q_proj.weight"),
            ("segformer.encoder.block.0.1.attention.self.sr.bias", "segformer.stages.0.blocks.1.attention.sequence_reduction.sequence_reduction.bias"),
            ("segformer.encoder.block.0.1.attention.self.layer_norm.weight", "segformer.stages.0.blocks.1.attention.sequence_reduction.layer_norm.weight"),
            ("segformer.encoder.block.3.1.attention.output.dense.bias", "segformer.stages.3.blocks.1.attention.o_proj.bias"),
            ("segformer.encoder.block.3.1.mlp.dense2.weight", "segformer.stages.3.blocks.1.mlp.fc2.weight"),
            ("segformer.encoder.block.3.1.mlp.dwconv.dwconv.weight", "segformer.stages.3.blocks.1.mlp.dwconv.dwconv.weight"),
            ("segformer.encoder.layer_norm.3.weight", "segformer.stages.3.layer_norm.weight"),
        ]
        for (old, new) in cases {
            XCTAssertEqual(SegformerBuilder.parameterKey("m." + old, scopes: ["segformer."]), new)
        }
        // Node path of an old export's MatMul → parameter name.
        XCTAssertEqual(SegformerBuilder.parameterKey("segformer.encoder.block.0.0.attention.self.key.weight", scopes: ["segformer."]),
                       "segformer.stages.0.blocks.0.attention.k_proj.weight")
        XCTAssertNil(SegformerBuilder.parameterKey("classifier.weight", scopes: ["segformer."]))
    }
}

/// Against the real-size exports of ../shared/reference (skipped when the folder is absent).
final class SegformerBuilderSharedTests: XCTestCase {
    /// Weights of every export kind (TorchScript op17/op14, dynamo op18) load into the built b0, which
    /// then gives PyTorch's logits on 1×3×512×512 (README tolerance 1e-4).
    func testB0LoadsEveryExportKindAndMatchesPyTorch() throws {
        let dir = try SharedFixtures.path("reference/segformer-b0-ade") + "/"
        var loaded: [Model] = []
        for file in ["model.op17.onnx", "model.op14.onnx", "model.op18-dynamo.onnx"] {
            let export = try ONNXImporter.load(contentsOf: dir + file)
            var model = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150))
            let n = try SegformerBuilder.loadParameters(from: export, into: &model, scopes: ["segformer.", "decode_head."])
            XCTAssertEqual(n, 204, file)
            loaded.append(model)
        }
        for name in loaded[0].graph.initializers.keys where SegformerBuilderTests.isParameter(name) {
            for other in loaded.dropFirst() {
                // Equal up to the rounding of each exporter's own BatchNorm folding into linear_fuse.
                XCTAssertLessThanOrEqual(maxAbsDifference(other.graph.initializers[name]!, loaded[0].graph.initializers[name]!),
                                         1e-6, name)
            }
        }
        let x = try ONNXImporter.readTensorFile(dir + "test_data_set_0/input_0.pb").tensor
        let expected = try ONNXImporter.readTensorFile(dir + "test_data_set_0/output_0.pb").tensor
        let logits = try Session(model: loaded[0]).run(["pixel_values": x])["logits"]!
        XCTAssertEqual(logits.shape, [1, 150, 128, 128])
        XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-4)
    }

    func testMitB0EncoderLoads() throws {
        let export = try ONNXImporter.load(contentsOf: try SharedFixtures.path("reference/mit-b0-classifier/model.op17.onnx"))
        var model = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150))
        let n = try SegformerBuilder.loadEncoder(from: export, into: &model)
        XCTAssertEqual(n, model.graph.initializers.keys.filter { $0.hasPrefix("segformer.") }.count)
        var b1 = try SegformerBuilder.build(config: SegformerConfig.variant("b1", numLabels: 150))
        XCTAssertThrowsError(try SegformerBuilder.loadEncoder(from: export, into: &b1))
    }
}
