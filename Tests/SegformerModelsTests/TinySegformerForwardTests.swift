import XCTest
import GraphIR
import Runtime
import TestSupport

/// The real HuggingFace SegFormer architecture (tiny config) exported by PyTorch at opsets 12, 14
/// and 17, batch 2 with dynamic height/width: logits must equal PyTorch's
/// (fixtures: scripts/fixtures/make_tiny_segformer.py).
final class TinySegformerForwardTests: XCTestCase {
    func testLogitsMatchPyTorchAtEveryOpset() throws {
        let x = try commonFixtures.tensor("tiny-segformer/test_data_set_0/input_0.pb")
        let expected = try commonFixtures.tensor("tiny-segformer/test_data_set_0/output_0.pb")
        for file in ["model.op17.onnx", "model.op14.onnx", "model.op12.onnx"] {
            let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/" + file))
            let session = try Session(model: model, options: SessionOptions(threads: 2))
            let logits = try session.run(["pixel_values": x])["logits"]!
            XCTAssertEqual(logits.shape, [2, 5, 8, 8], file)
            XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-5, file)
            // A second run reuses the cached plan and must give the same bits.
            let again = try session.run(["pixel_values": x])["logits"]!
            XCTAssertTrue(again.bitwiseEqual(logits), file)
        }
    }

    /// The decode head's 1×1 fuse conv over the Concat of the four upsampled stages folds into the
    /// stages' MatMuls (the optimizing passes); logits agree with the unoptimized graph.
    func testDecodeHeadAlgebraRemovesTheFuseConv() throws {
        let x = try commonFixtures.tensor("tiny-segformer/test_data_set_0/input_0.pb")
        for file in ["model.op17.onnx", "model.op14.onnx", "model.op12.onnx"] {
            let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/" + file))
            let optimized = try Session(model: model, options: SessionOptions(threads: 2))
            let plain = try Session(model: model, options: SessionOptions(threads: 2, optimizingPasses: false))
            let report = try XCTUnwrap(optimized.compiled.optimization, file)
            let decodeHead: Set = ["split-conv-over-concat", "conv-before-resize", "fold-conv-into-matmul"]
            XCTAssertTrue(report.passes.filter { decodeHead.contains($0.pass) }.allSatisfy(\.changedGraph), "\(file): \(report)")
            // The fuse conv is gone, the classifier became the projection of the channels-last sum
            // (one ResizeSum), and each MixFFN's depthwise conv became a TokenDepthwiseConv.
            let depthwise = report.after[fusedDomain + "." + OpType.tokenDepthwiseConv] ?? 0
            XCTAssertGreaterThan(depthwise, 0, "\(file): \(report)")
            XCTAssertEqual(report.after[fusedDomain + "." + OpType.resizeSum], 1, "\(file): \(report)")
            // The patch embeddings and spatial reductions write tokens as ChannelsLastConvs.
            let channelsLast = report.after[fusedDomain + "." + OpType.channelsLastConv] ?? 0
            XCTAssertGreaterThan(channelsLast, 0, "\(file): \(report)")
            XCTAssertEqual(report.after["Conv"] ?? 0, (report.before["Conv"] ?? 0) - 2 - depthwise - channelsLast, "\(file): \(report)")
            // Each attention's two MatMuls become one fused node; every other MatMul stays one
            // (the linears with their bias and residual as FusedMatMuls), but MixFFN's fc2, which its
            // depthwise conv takes in.
            let attentions = report.after[fusedDomain + ".Attention"] ?? 0
            let fused = report.after[fusedDomain + "." + OpType.fusedMatMul] ?? 0
            XCTAssertGreaterThan(attentions, 0, "\(file): \(report)")
            XCTAssertGreaterThan(fused, 0, "\(file): \(report)")
            XCTAssertEqual((report.after["MatMul"] ?? 0) + fused, report.before["MatMul"].map { $0 - 2 * attentions - depthwise }, "\(file): \(report)")
            let a = try optimized.run(["pixel_values": x])["logits"]!
            let b = try plain.run(["pixel_values": x])["logits"]!
            XCTAssertLessThanOrEqual(maxAbsDifference(a, b), 1e-5, file)
        }
    }

    /// Exports below opset 17 write LayerNorm out in elementary ops, and below opset 20 GELU: the
    /// canonicalising passes make each a single node (valid at the model's opset), which
    /// `testLogitsMatchPyTorchAtEveryOpset` checks against PyTorch.
    func testDecomposedLayerNormAndGeluBecomeSingleNodes() throws {
        for (file, layerNorm) in [("model.op17.onnx", "LayerNormalization"), ("model.op14.onnx", fusedDomain + ".LayerNormalization"),
                                  ("model.op12.onnx", fusedDomain + ".LayerNormalization")] {
            let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/" + file))
            let report = try XCTUnwrap(CompiledModel(model: model).optimization, file)
            let erfs = try XCTUnwrap(report.before["Erf"], file)
            // (fuse-token-depthwise-conv then takes each of these GELUs into the depthwise conv before it.)
            XCTAssertEqual(report.passes.first { $0.pass == "fuse-gelu" }?.added[fusedDomain + ".Gelu"], erfs, "\(file): \(report)")
            // (fuse-layer-norm-into-producer then takes most LayerNorms into the fused node before them.)
            let carried = report.passes.first { $0.pass == "fuse-layer-norm-into-producer" }?.removed[layerNorm] ?? 0
            XCTAssertGreaterThan(carried, 0, "\(file): \(report)")
            XCTAssertEqual((report.after[layerNorm] ?? 0) + carried,
                           (report.before["LayerNormalization"] ?? 0) + (report.before["ReduceMean"] ?? 0) / 2, "\(file): \(report)")
            for op in ["Erf", "ReduceMean", "Pow", "Sqrt", "Sub"] { XCTAssertNil(report.after[op], "\(file): \(op) left: \(report)") }
        }
    }

    func testOtherInputSizesBindSymbolicDimensions() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        let session = try Session(model: model)
        let x = try Benchmark.randomTensor(.float, shape: [1, 3, 64, 48])
        let logits = try session.run(["pixel_values": x])["logits"]!
        XCTAssertEqual(logits.shape, [1, 5, 16, 12])
    }

    func testWrongInputShapeNamesTheInput() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/model.op17.onnx"))
        let session = try Session(model: model)
        let x = try Benchmark.randomTensor(.float, shape: [1, 4, 32, 32])
        XCTAssertThrowsError(try session.run(["pixel_values": x])) { e in
            XCTAssertTrue("\(e)".contains("pixel_values") && "\(e)".contains("dimension 1"), "\(e)")
        }
        XCTAssertThrowsError(try session.run([:])) { e in XCTAssertTrue("\(e)".contains("missing input 'pixel_values'"), "\(e)") }
    }

    /// Symbolic shapes flow through the whole graph, Reshapes to computed shapes included.
    func testTypeInferenceKeepsSymbolicDimensions() throws {
        for file in ["model.op17.onnx", "model.op14.onnx", "model.op12.onnx"] {
            let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-segformer/" + file))
            let result = try TypeInference.infer(model.graph, opset: model.opset)
            XCTAssertTrue(result.unknown.isEmpty, "\(file): \(result.unknown)")
            let logits = try XCTUnwrap(result.types["logits"]?.shape, file)
            XCTAssertEqual(logits.count, 4)
            XCTAssertEqual(logits[0], .symbol("batch"), file)
            XCTAssertEqual(logits[1], .known(5), file)
            XCTAssertTrue(logits[2].description.contains("height") && logits[3].description.contains("width"), "\(logits)")
        }
    }

    func testClassifierMatchesPyTorch() throws {
        let model = try ONNXImporter.load(contentsOf: commonFixtures.path("tiny-classifier/model.onnx"))
        let session = try Session(model: model)
        let x = try commonFixtures.tensor("tiny-classifier/test_data_set_0/input_0.pb")
        let expected = try commonFixtures.tensor("tiny-classifier/test_data_set_0/output_0.pb")
        let logits = try session.run(["pixel_values": x])["logits"]!
        XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-5)
    }
}
