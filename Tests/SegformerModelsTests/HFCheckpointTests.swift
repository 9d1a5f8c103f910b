import Foundation
import XCTest
import GraphIR
import Runtime
@testable import SegformerModels
import TestSupport

/// HuggingFace checkpoint folders read without Python, against PyTorch's logits (fixtures:
/// scripts/fixtures/make_hf_checkpoint_fixtures.py), and hostile or corrupt files against clean errors.
final class HFCheckpointTests: XCTestCase {
    func folder(_ name: String) throws -> String { try commonFixtures.path("hf-checkpoints/" + name) }

    func logits(_ model: Model) throws -> Tensor {
        let x = try commonFixtures.tensor("hf-checkpoints/input.pb")
        return try XCTUnwrap(Session(model: model, options: SessionOptions(threads: 2)).run(["pixel_values": x])["logits"])
    }

    /// transformers-5 names in model.safetensors, legacy names in model.safetensors (save_pretrained's
    /// own output) and legacy names in pytorch_model.bin all give PyTorch's logits.
    func testFoldersGivePyTorchLogits() throws {
        let expected = try commonFixtures.tensor("hf-checkpoints/logits.pb")
        for name in ["seg-v5", "seg-legacy", "seg-bin"] {
            let model = try ModelFile.load(folder(name))
            let y = try logits(model)
            XCTAssertEqual(y.shape, expected.shape, name)
            XCTAssertLessThanOrEqual(maxAbsDifference(y, expected), 1e-4, name)
        }
    }

    /// Our legacy names are exactly the ones transformers' save_pretrained wrote, and translate back.
    func testNameSetsMatchTransformers() throws {
        let legacy = try Safetensors.read(contentsOf: folder("seg-legacy/model.safetensors")).tensors.keys
        let current = try Safetensors.read(contentsOf: folder("seg-v5/model.safetensors")).tensors.keys
        XCTAssertEqual(Set(current.map(HFParameterNames.legacy)), Set(legacy))
        XCTAssertEqual(Set(legacy.map(HFParameterNames.current)), Set(current))
        XCTAssertTrue(current.contains("segformer.stages.1.blocks.1.attention.q_proj.weight"))
        XCTAssertTrue(legacy.contains("segformer.encoder.block.1.1.attention.self.query.weight"))
    }

    /// The same tensors from the zip/pickle reader as from the safetensors reader (bit for bit).
    func testPickleAndSafetensorsAgree() throws {
        let bin = try TorchCheckpoint.read(contentsOf: folder("seg-bin/pytorch_model.bin"))
        let safe = try Safetensors.read(contentsOf: folder("seg-legacy/model.safetensors")).tensors
        XCTAssertEqual(Set(bin.keys), Set(safe.keys))
        for (name, t) in safe { XCTAssertTrue(bin[name]?.bitwiseEqual(t) == true, name) }
    }

    /// Views of one storage (transposed, offset, strided, float16) come out as torch.save meant them.
    func testPickledViewsAreGathered() throws {
        let views = try TorchCheckpoint.read(contentsOf: commonFixtures.path("hf-checkpoints/views.bin"))
        let expected = try Safetensors.read(contentsOf: commonFixtures.path("hf-checkpoints/views.safetensors")).tensors
        XCTAssertEqual(Set(views.keys), Set(expected.keys))
        for (name, t) in expected { XCTAssertTrue(views[name]?.bitwiseEqual(t) == true, "\(name): \(String(describing: views[name]))") }
    }

    func testConfigAndProcessorAreRead() throws {
        let f = try HFCheckpointFolder(path: folder("seg-bin"))
        XCTAssertEqual(f.config.hiddenSizes, [8, 16, 24, 32])
        XCTAssertEqual(f.config.depths, [1, 2, 1, 1])
        XCTAssertEqual(f.config.id2label, [0: "wall", 1: "floor", 2: "sky", 3: "tree"])
        XCTAssertEqual(f.head, .semanticSegmentation)
        let p = try f.imageProcessor()
        XCTAssertEqual([p.height, p.width], [40, 52])
        XCTAssertEqual(try HFCheckpointFolder(path: folder("cls")).head, .imageClassification)
    }

    /// export-hf's folder reads back to the same function (from_pretrained is checked by
    /// scripts/check_hf_checkpoints.py), with the hub's names.
    func testWrittenFolderReadsBack() throws {
        let source = try HFCheckpointFolder(path: folder("seg-v5"))
        let out = NSTemporaryDirectory() + "hf-export-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try HFCheckpointFolder.write(source.loadModel(), config: source.config, head: source.head,
                                     processor: source.imageProcessor(), to: out, overwrite: false)
        let names = try Safetensors.read(contentsOf: out + "/model.safetensors").tensors.keys
        let hub = try Safetensors.read(contentsOf: folder("seg-legacy/model.safetensors")).tensors.keys
        XCTAssertEqual(Set(names), Set(hub))
        let expected = try commonFixtures.tensor("hf-checkpoints/logits.pb")
        XCTAssertLessThanOrEqual(maxAbsDifference(try logits(ModelFile.load(out)), expected), 1e-4)
        // A second write without overwrite leaves the folder alone.
        XCTAssertThrowsError(try HFCheckpointFolder.write(source.loadModel(), config: source.config, head: source.head,
                                                          processor: source.imageProcessor(), to: out, overwrite: false))
    }

    // MARK: - Hostile and corrupt input

    func expectError(_ body: @autoclosure () throws -> Any, mentioning parts: [String], line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(error is SegFormerError, "not a SegFormerError: \(text)", line: line)
            XCTAssertFalse(text.contains("\n"), "more than one line: \(text)", line: line)
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' does not mention '\(p)'", line: line) }
        }
    }

    func testHostilePicklesAreRefused() throws {
        expectError(try ModelFile.load(folder("bad/hostile")), mentioning: ["pytorch_model.bin", "refused global 'posix.system'"])
        expectError(try ModelFile.load(folder("bad/unlisted-class")), mentioning: ["pytorch_model.bin", "'_io.BytesIO'"])
        expectError(try ModelFile.load(folder("bad/legacy-format")), mentioning: ["pytorch_model.bin", "legacy torch.save format"])
        expectError(try ModelFile.load(folder("bad/no-weights")), mentioning: ["no-weights", "model.safetensors"])
    }

    /// A folder copied from a fixture with one file replaced.
    func scratchFolder(from name: String, replacing file: String? = nil, with bytes: [UInt8] = []) throws -> String {
        let dir = NSTemporaryDirectory() + "hf-bad-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: folder(name), toPath: dir)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        if let file { try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + file)) }
        return dir
    }

    func testBrokenFoldersNameFileAndTensor() throws {
        let bin = [UInt8](try commonFixtures.data("hf-checkpoints/seg-bin/pytorch_model.bin"))
        expectError(try ModelFile.load(scratchFolder(from: "seg-bin", replacing: "pytorch_model.bin", with: Array(bin.prefix(bin.count / 2)))),
                    mentioning: ["pytorch_model.bin"])
        let noConfig = try scratchFolder(from: "seg-v5")
        try FileManager.default.removeItem(atPath: noConfig + "/config.json")
        expectError(try ModelFile.load(noConfig), mentioning: ["config.json", "missing"])
        expectError(try ModelFile.load(scratchFolder(from: "seg-v5", replacing: "config.json", with: Array("{\"hidden_sizes\": [8, 16, 24, 40], \"num_encoder_blocks\": 4, \"depths\": [1, 2, 1, 1], \"sr_ratios\": [4, 2, 2, 1], \"num_attention_heads\": [1, 2, 3, 4], \"mlp_ratios\": [2, 2, 2, 2], \"decoder_hidden_size\": 16, \"num_labels\": 4}".utf8))),
                    mentioning: ["model.safetensors", "has shape", "config.json makes it"])

        // Unknown, missing and wrongly shaped tensors, through the safetensors writer.
        var tensors = try Safetensors.read(contentsOf: folder("seg-v5/model.safetensors")).tensors
        tensors["decode_head.extra.weight"] = Tensor([Float(1)], shape: [1])
        expectError(try ModelFile.load(scratchFolder(from: "seg-v5", replacing: "model.safetensors", with: Safetensors.encode(tensors))),
                    mentioning: ["model.safetensors", "unknown tensor 'decode_head.extra.weight'"])
        tensors["decode_head.extra.weight"] = nil
        let dropped = tensors.removeValue(forKey: "segformer.stages.2.blocks.0.mlp.fc2.bias")!
        expectError(try ModelFile.load(scratchFolder(from: "seg-v5", replacing: "model.safetensors", with: Safetensors.encode(tensors))),
                    mentioning: ["model.safetensors", "'segformer.stages.2.blocks.0.mlp.fc2.bias' missing"])
        tensors["segformer.stages.2.blocks.0.mlp.fc2.bias"] = Tensor(zeros: .float, shape: [dropped.count + 1])
        expectError(try ModelFile.load(scratchFolder(from: "seg-v5", replacing: "model.safetensors", with: Safetensors.encode(tensors))),
                    mentioning: ["model.safetensors", "'segformer.stages.2.blocks.0.mlp.fc2.bias' has shape [25]"])
    }

    /// safetensors bytes with `header` as the JSON header and `data` after it.
    func safetensors(_ header: String, data: Int = 16) -> Data {
        var bytes = [UInt8](repeating: 0, count: 8)
        let json = Array(header.utf8)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: json.count >> (8 * i)) }
        return Data(bytes + json + [UInt8](repeating: 0, count: data))
    }

    func testCorruptSafetensorsHeaders() throws {
        expectError(try Safetensors.decode(Data([1, 2, 3])), mentioning: ["shorter than the 8-byte header length"])
        expectError(try Safetensors.decode(Data([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x7B])), mentioning: ["header length 4294967295 exceeds"])
        expectError(try Safetensors.decode(safetensors("{not json")), mentioning: ["not valid JSON"])
        expectError(try Safetensors.decode(safetensors("[1, 2]")), mentioning: ["not a JSON object"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#)),
                    mentioning: ["overlap"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}"#)),
                    mentioning: ["tensor 'w'", "out of range"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [2, 10]}}"#)),
                    mentioning: ["tensor 'w'", "misaligned"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#)),
                    mentioning: ["tensor 'w'", "needs 12"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}"#)),
                    mentioning: ["tensor 'w'", "C64"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#)),
                    mentioning: ["tensor 'w'", "shape"])
        expectError(try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#)),
                    mentioning: ["tensor 'w'", "larger than the file"])
        // A well-formed one decodes.
        let ok = try Safetensors.decode(safetensors(#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"format": "pt"}}"#))
        XCTAssertEqual(ok.tensors["w"]?.shape, [2, 2])
        XCTAssertEqual(ok.metadata, ["format": "pt"])
    }

    /// Pickles no state dict contains: refused with one error, never run, never a crash.
    func testUnpicklerRefusesWhatIsNotAStateDict() throws {
        func unpickle(_ bytes: [UInt8]) throws -> Any {
            var u = AllowListUnpickler(bytes: bytes, storages: nil)
            return try u.load()
        }
        let proto2: [UInt8] = [0x80, 0x02]
        // pickle.dumps(os.system) at protocol 4: STACK_GLOBAL with 'posix', 'system'.
        let stackGlobal: [UInt8] = [0x80, 0x04, 0x8C, 0x05] + Array("posix".utf8) + [0x8C, 0x06] + Array("system".utf8) + [0x93, 0x2E]
        expectError(try unpickle(stackGlobal), mentioning: ["refused global 'posix.system'"])
        expectError(try unpickle(proto2 + [0x69] + Array("os\nsystem\n".utf8) + [0x2E]), mentioning: ["refused pickle opcode 0x69"])   // INST
        expectError(try unpickle(proto2 + [0x7D, 0x29, 0x52, 0x2E]), mentioning: ["only allowed globals may be called"])     // {}()
        expectError(try unpickle(proto2 + [0x68, 0x07, 0x2E]), mentioning: ["memo 7 read before it was written"])
        expectError(try unpickle(proto2 + [0x58, 0xFF, 0xFF, 0xFF, 0x7F]), mentioning: ["truncated pickle"])
        expectError(try unpickle(proto2 + [0x2E]), mentioning: ["stack underflow"])
        // 100 000 nested 1-tuples would overflow the stack when freed; refused at depth 64.
        let deep = proto2 + [0x29] + [UInt8](repeating: 0x85, count: 100_000) + [0x2E]
        expectError(try unpickle(deep), mentioning: ["nested more than 64 deep"])
        // A persistent id with no archive behind it.
        let pid = proto2 + [0x28, 0x8C, 0x07] + Array("storage".utf8) + [0x63] + Array("torch\nFloatStorage\n".utf8)
            + [0x8C, 0x01, 0x30, 0x8C, 0x03] + Array("cpu".utf8) + [0x4B, 0x01, 0x74, 0x51, 0x2E]
        expectError(try unpickle(pid), mentioning: ["storage '0' named outside a checkpoint archive"])
    }
}
