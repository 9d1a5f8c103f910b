import Foundation
import XCTest
@testable import GraphIR
import TestSupport

/// ONNX import/export. Fixtures come from scripts/fixtures/make_onnx_fixtures.py; the expected values
/// below are the literal values written there.
final class ONNXTests: XCTestCase {
    static let fixtures = BundledFixtures(Bundle.module)

    func fixture(_ name: String) throws -> String { try Self.fixtures.path("onnx/" + name) }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "onnx-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func error(_ body: () throws -> Any) -> SegFormerError? {
        do { _ = try body(); return nil } catch let e as SegFormerError { return e } catch {
            XCTFail("unexpected error type: \(error)"); return nil
        }
    }

    func assertInvalid(_ body: () throws -> Any, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        guard let e = error(body) else { return XCTFail("expected an error", file: file, line: line) }
        guard case .invalid(let m) = e else { return XCTFail("expected .invalid, got \(e)", file: file, line: line) }
        for s in mentions { XCTAssertTrue(m.contains(s), "'\(m)' does not mention '\(s)'", file: file, line: line) }
    }

    // MARK: comparing models

    func assertEqual(_ a: Tensor, _ b: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(a.bitwiseEqual(b), "\(what): \(a) vs \(b)", file: file, line: line)
    }

    func assertEqual(_ a: Attribute, _ b: Attribute, _ what: String) {
        switch (a, b) {
        case (.int(let x), .int(let y)): XCTAssertEqual(x, y, what)
        case (.float(let x), .float(let y)): XCTAssertEqual(x.bitPattern, y.bitPattern, what)
        case (.string(let x), .string(let y)): XCTAssertEqual(x, y, what)
        case (.ints(let x), .ints(let y)): XCTAssertEqual(x, y, what)
        case (.floats(let x), .floats(let y)): XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), what)
        case (.strings(let x), .strings(let y)): XCTAssertEqual(x, y, what)
        case (.tensor(let x), .tensor(let y)): assertEqual(x, y, what)
        case (.graph(let x), .graph(let y)): assertEqual(x, y, what)
        default: XCTFail("\(what): \(a.kindName) vs \(b.kindName)")
        }
    }

    func assertEqual(_ a: Graph, _ b: Graph, _ what: String) {
        XCTAssertEqual(a.name, b.name, what)
        XCTAssertEqual(a.nodes.count, b.nodes.count, what)
        for (x, y) in zip(a.nodes, b.nodes) {
            XCTAssertEqual(x.name, y.name, what)
            XCTAssertEqual(x.opType, y.opType, what)
            XCTAssertEqual(x.domain, y.domain, what)
            XCTAssertEqual(x.inputs, y.inputs, what)
            XCTAssertEqual(x.outputs, y.outputs, what)
            XCTAssertEqual(x.attributes.keys.sorted(), y.attributes.keys.sorted(), what)
            for (k, v) in x.attributes { if let w = y.attributes[k] { assertEqual(v, w, "\(what) \(x.label).\(k)") } }
        }
        XCTAssertEqual(a.inputs.map(\.name), b.inputs.map(\.name), what)
        XCTAssertEqual(a.inputs.map(\.type), b.inputs.map(\.type), what)
        XCTAssertEqual(a.outputs.map(\.name), b.outputs.map(\.name), what)
        XCTAssertEqual(a.outputs.map(\.type), b.outputs.map(\.type), what)
        XCTAssertEqual(a.valueInfo, b.valueInfo, what)
        XCTAssertEqual(a.initializerOrder, b.initializerOrder, what)
        XCTAssertEqual(a.initializers.count, b.initializers.count, what)
        for (k, t) in a.initializers {
            guard let u = b.initializers[k] else { XCTFail("\(what): initializer \(k) missing"); continue }
            assertEqual(t, u, "\(what) initializer \(k)")
        }
    }

    func assertEqual(_ a: Model, _ b: Model, _ what: String) {
        XCTAssertEqual(a.opsetImports, b.opsetImports, what)
        XCTAssertEqual(a.irVersion, b.irVersion, what)
        XCTAssertEqual(a.producerName, b.producerName, what)
        XCTAssertEqual(a.producerVersion, b.producerVersion, what)
        XCTAssertEqual(a.metadata, b.metadata, what)
        assertEqual(a.graph, b.graph, what)
    }

    // MARK: import

    func testTwoNodeModel() throws {
        let m = try ONNXImporter.load(contentsOf: fixture("two_node.onnx"))
        XCTAssertEqual(m.opsetImports, ["": 17])
        XCTAssertEqual(m.opset, 17)
        XCTAssertEqual(m.irVersion, 8)
        XCTAssertEqual(m.producerName, "fixture-maker")
        XCTAssertEqual(m.producerVersion, "1.0")
        XCTAssertEqual(m.metadata, ["author": "tests", "purpose": "two nodes"])
        let g = m.graph
        XCTAssertEqual(g.name, "two_node")
        XCTAssertEqual(g.nodes.map(\.opType), ["Add", "Relu"])
        XCTAssertEqual(g.nodes.map(\.name), ["add", "relu"])
        XCTAssertEqual(g.nodes[0].inputs, ["X", "W"])
        XCTAssertEqual(g.nodes[1].outputs, ["Y"])
        XCTAssertEqual(g.inputs.map(\.name), ["X"])
        // Named symbolic dims are kept; unnamed unknown ones get fresh "?N" names in file order.
        XCTAssertEqual(g.inputs[0].type, TensorType(.float, [.symbol("batch"), .symbol("?0"), .known(3)]))
        XCTAssertEqual(g.outputs[0].type, TensorType(.float, [.symbol("batch"), .symbol("?1"), .known(3)]))
        XCTAssertEqual(g.valueInfo["S"], TensorType(.float, [.symbol("batch"), .symbol("?2"), .known(3)]))
        XCTAssertEqual(g.initializerOrder, ["W"])
        XCTAssertEqual(g.initializers["W"]?.shape, [3])
        XCTAssertEqual(g.initializers["W"]?.toArray(Float.self), [1.0, -2.0, 3.5])
        XCTAssertEqual(g.runtimeInputs.map(\.name), ["X"])
    }

    func testAttributesAndTypedInitializers() throws {
        let m = try ONNXImporter.load(contentsOf: fixture("attributes.onnx"))
        XCTAssertEqual(m.opsetImports, ["": 17, "test.domain": 1])
        let n = m.graph.nodes[0]
        XCTAssertEqual(n.domain, "test.domain")
        XCTAssertEqual(n.inputs, ["A", "", "I8"])
        XCTAssertNil(n.input(1))
        XCTAssertEqual(try n.float("f"), 1.5)
        XCTAssertEqual(try n.int("i"), -3)
        XCTAssertEqual(try n.string("s"), "hello")
        XCTAssertEqual(try n.floats("fs"), [0.5, 2.0])
        XCTAssertEqual(try n.ints("ins"), [1, 2, 3])
        if case .strings(let ss)? = n.attributes["ss"] { XCTAssertEqual(ss, ["a", "bc"]) } else { XCTFail("ss") }
        XCTAssertEqual(try n.tensor("t")?.toArray(Int64.self), [7, -8])
        guard case .graph(let body)? = n.attributes["g"] else { return XCTFail("g") }
        XCTAssertEqual(body.nodes.map(\.opType), ["Neg"])
        XCTAssertEqual(body.inputs[0].type, TensorType(.float, known: [1]))
        XCTAssertEqual(m.graph.outputs[0].type, TensorType(.float, nil))   // rank unknown

        let i = m.graph.initializers
        XCTAssertEqual(i["F"]?.toArray(Float.self), [1, 2, 3, 4])
        XCTAssertEqual(i["F"]?.shape, [2, 2])
        XCTAssertEqual(i["D"]?.toArray(Double.self), [0.25, -1e300])
        XCTAssertEqual(i["I64"]?.toArray(Int64.self), [1, -2, 1 << 40])
        XCTAssertEqual(i["I32"]?.toArray(Int32.self), [-5, Int32.max])
        XCTAssertEqual(i["I16"]?.toArray(Int16.self), [-300, 300])
        XCTAssertEqual(i["I8"]?.toArray(Int8.self), [-128, 0, 127])
        XCTAssertEqual(i["U8"]?.toArray(UInt8.self), [0, 255])
        XCTAssertEqual(i["U16"]?.toArray(UInt16.self), [65535])
        XCTAssertEqual(i["U32"]?.toArray(UInt32.self), [0, 4_000_000_000])
        XCTAssertEqual(i["U64"]?.toArray(UInt64.self), [UInt64.max])
        XCTAssertEqual(i["BOOL"]?.toArray(Bool.self), [true, false, true])
        XCTAssertEqual(i["F16"]?.toArray(Float16.self), [1.0, -2.5])
        XCTAssertEqual(i["BF16"]?.toArray(BFloat16.self).map(\.float), [1.0, -2.5])
        XCTAssertEqual(i["STR"]?.strings, ["x", "ÿ€"])
        XCTAssertEqual(i["SCALAR"]?.shape, [])
        XCTAssertEqual(i["SCALAR"]?.toArray(Float.self), [42])
        XCTAssertEqual(i["EMPTY"]?.shape, [0, 3])
        XCTAssertEqual(m.graph.initializerOrder.first, "F")
    }

    func testExternalDataInSubfolder() throws {
        let m = try ONNXImporter.load(contentsOf: fixture("external/model.onnx"))
        XCTAssertEqual(m.graph.initializers["W"]?.toArray(Float.self), [1.0, -2.0, 3.5])
        XCTAssertEqual(m.graph.initializers["W2"]?.toArray(Float.self), (0..<12).map(Float.init))
        XCTAssertEqual(m.graph.initializers["W2"]?.shape, [4, 3])
    }

    func testTensorFiles() throws {
        let raw = try ONNXImporter.readTensorFile(fixture("tensor_raw.pb"))
        XCTAssertEqual(raw.name, "raw_input")
        XCTAssertEqual(raw.tensor.shape, [2, 3])
        XCTAssertEqual(raw.tensor.toArray(Float.self), [1.5, -2.0, 0.0, 3.25, 1e-3, -7.0])
        let i64 = try ONNXImporter.readTensorFile(fixture("tensor_typed_int64.pb"))
        XCTAssertEqual(i64.name, "typed_int64")
        XCTAssertEqual(i64.tensor.toArray(Int64.self), [1, -1, 1 << 62, -(1 << 62)])
        let f = try ONNXImporter.readTensorFile(fixture("tensor_typed_float.pb"))
        XCTAssertEqual(f.tensor.toArray(Float.self), [0.5, -0.25, 8.0])
    }

    // MARK: bad tensors

    func testUnsupportedElementTypeIsNamed() {
        guard let e = error({ try ONNXImporter.readTensorFile(fixture("tensor_float8.pb")) }) else { return XCTFail() }
        XCTAssertTrue(e.isUnsupported, "\(e)")
        XCTAssertTrue(e.description.contains("'f8'") && e.description.contains("float8e4m3fn"), "\(e)")
    }

    func testLyingTensorHeadersAreRefusedWithoutAllocating() {
        assertInvalid({ try ONNXImporter.readTensorFile(self.fixture("tensor_lying_dims.pb")) },
                      mentions: ["tensor_lying_dims.pb", "'liar'", "raw_data holds 4"])
        assertInvalid({ try ONNXImporter.readTensorFile(self.fixture("tensor_overflow_dims.pb")) },
                      mentions: ["'overflow'", "overflows"])
        assertInvalid({ try ONNXImporter.readTensorFile(self.fixture("tensor_negative_dims.pb")) },
                      mentions: ["'negative'", "negative dimension -1"])
        assertInvalid({ try ONNXImporter.readTensorFile(self.fixture("tensor_short_typed.pb")) },
                      mentions: ["'short'", "3 values in int64_data, expected 4"])
    }

    // MARK: external data safety

    func testExternalLocationEscapingTheFolderIsRefused() {
        assertInvalid({ try ONNXImporter.load(contentsOf: self.fixture("escape/model.onnx")) },
                      mentions: ["escape/model.onnx", "'W'", "../outside.bin"])
        assertInvalid({ try ONNXImporter.load(contentsOf: self.fixture("absolute/model.onnx")) },
                      mentions: ["'W'", "/etc/passwd", "absolute"])
    }

    func twoNodeWithExternalData(in dir: String) throws -> String {
        var m = try ONNXImporter.load(contentsOf: fixture("two_node.onnx"))
        m.graph.setInitializer("Big", Tensor((0..<100).map(Float.init), shape: [100]))
        m.graph.nodes[1].inputs.append("Big")   // keep it used; validation does not check arity
        let path = dir + "/m.onnx"
        try ONNXExporter.write(m, to: path, externalDataThreshold: 64)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path + ".data"))
        return path
    }

    func testSymlinkOutOfTheFolderIsRefused() throws {
        let root = try tempDir()
        try FileManager.default.createDirectory(atPath: root + "/model", withIntermediateDirectories: true)
        let path = try twoNodeWithExternalData(in: root + "/model")
        try FileManager.default.moveItem(atPath: path + ".data", toPath: root + "/elsewhere.data")
        try FileManager.default.createSymbolicLink(atPath: path + ".data", withDestinationPath: root + "/elsewhere.data")
        assertInvalid({ try ONNXImporter.load(contentsOf: path) }, mentions: ["m.onnx.data", "outside the model's folder"])
    }

    func testMissingOrShortExternalFile() throws {
        let dir = try tempDir()
        let path = try twoNodeWithExternalData(in: dir)
        XCTAssertNoThrow(try ONNXImporter.load(contentsOf: path))
        // Shorter than the offsets say.
        let data = try Data(contentsOf: URL(fileURLWithPath: path + ".data"))
        try data.prefix(100).write(to: URL(fileURLWithPath: path + ".data"))
        assertInvalid({ try ONNXImporter.load(contentsOf: path) }, mentions: ["'Big'", "beyond the end", "m.onnx.data"])
        // Gone.
        try FileManager.default.removeItem(atPath: path + ".data")
        guard let e = error({ try ONNXImporter.load(contentsOf: path) }) else { return XCTFail() }
        XCTAssertTrue(e.description.contains("'Big'") && e.description.contains("m.onnx.data") && e.description.contains("not found"), "\(e)")
        // From bytes, without a folder.
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        assertInvalid({ try ONNXImporter.load(bytes: bytes, baseDirectory: nil) }, mentions: ["'Big'", "m.onnx.data"])
    }

    // MARK: malformed files

    func testTruncatedModel() {
        assertInvalid({ try ONNXImporter.load(contentsOf: self.fixture("two_node_truncated.onnx")) },
                      mentions: ["two_node_truncated.onnx", "not a valid ONNX model"])
    }

    func testEmptyAndGraphlessModels() {
        assertInvalid({ try ONNXImporter.load(bytes: [], baseDirectory: nil) }, mentions: ["not a valid ONNX model", "no graph"])
        assertInvalid({ try ONNXImporter.load(bytes: [0x08, 0x08], baseDirectory: nil) }, mentions: ["no graph"])
        guard let e = error({ try ONNXImporter.load(contentsOf: "/nonexistent/model.onnx") }) else { return XCTFail() }
        XCTAssertTrue(e.description.contains("/nonexistent/model.onnx"), "\(e)")
    }

    /// Without a default-domain opset the standard ops' semantics are unknown (Softmax changed at 13):
    /// refused, as onnxruntime does, instead of guessing opset 1.
    func testModelWithoutDefaultDomainOpsetIsRefused() throws {
        var m = try ONNXImporter.load(contentsOf: fixture("two_node.onnx"))
        m.opsetImports = ["test.domain": 1]
        let bytes = try ONNXExporter.serialize(m)
        assertInvalid({ try ONNXImporter.load(bytes: bytes, baseDirectory: nil) }, mentions: ["default ONNX domain", "'test.domain'"])
        m.opsetImports = ["ai.onnx": 17]   // the default domain's long name is as good
        XCTAssertEqual(try ONNXImporter.load(bytes: try ONNXExporter.serialize(m), baseDirectory: nil).opset, 17)
    }

    func testRandomBytes() {
        var rng = SplitMix(seed: 42)
        for size in [1, 2, 7, 64, 1000, 5000] {
            for _ in 0..<20 {
                let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                do {
                    _ = try ONNXImporter.load(bytes: bytes, baseDirectory: nil)
                } catch let e as SegFormerError {
                    XCTAssertFalse(e.description.isEmpty)
                } catch { XCTFail("\(error)") }
                _ = try? ONNXImporter.readTensor(bytes: bytes)
            }
        }
    }

    func testBitFlipsNeverCrash() throws {
        for name in ["two_node.onnx", "attributes.onnx"] {
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture(name))))
            var loaded = 0, refused = 0
            for i in 0..<original.count {
                for bit in [0, 3, 7] {
                    var bytes = original
                    bytes[i] ^= UInt8(1 << bit)
                    do { _ = try ONNXImporter.load(bytes: bytes, baseDirectory: nil); loaded += 1 } catch is SegFormerError { refused += 1 }
                }
            }
            XCTAssertGreaterThan(refused, 0, name)
            XCTAssertGreaterThan(loaded, 0, name)
            // Truncations are refused, except the few cuts that fall exactly between the trailing
            // top-level fields (opset_import, metadata_props), which leave a smaller valid model.
            var survivors = 0
            for n in 0..<original.count {
                if (try? ONNXImporter.load(bytes: Array(original.prefix(n)), baseDirectory: nil)) != nil { survivors += 1 }
            }
            XCTAssertLessThanOrEqual(survivors, 3, name)
        }
    }

    func testSparseInitializersAreUnsupported() {
        guard let e = error({ try ONNXImporter.load(contentsOf: fixture("sparse.onnx")) }) else { return XCTFail() }
        XCTAssertTrue(e.isUnsupported && e.description.contains("sparse"), "\(e)")
    }

    func testDeepNestingIsRefused() {
        // Graph → node → attribute g → graph … 2000 times: a parser recursing per level would overflow.
        func field(_ number: UInt8, _ payload: [UInt8]) -> [UInt8] {
            var out: [UInt8] = [(number << 3) | 2]
            var n = payload.count
            repeat { var b = UInt8(n & 0x7F); n >>= 7; if n > 0 { b |= 0x80 }; out.append(b) } while n > 0
            return out + payload
        }
        var graph: [UInt8] = []
        for _ in 0..<2000 { graph = field(1, field(5, field(6, graph))) }
        let model = field(7, graph)
        assertInvalid({ try ONNXImporter.load(bytes: model, baseDirectory: nil) }, mentions: ["nested deeper"])
    }

    // MARK: graph validation

    func model(_ nodes: [Node], outputs: [String] = ["Y"]) -> Model {
        Model(graph: Graph(name: "g", nodes: nodes,
                           inputs: [ValueInfo(name: "X", type: TensorType(.float, known: [1]))],
                           outputs: outputs.map { ValueInfo(name: $0, type: TensorType(.float, known: [1])) },
                           initializers: ["W": Tensor([Float(1)], shape: [1])]))
    }

    func reimport(_ m: Model) throws -> Model {
        try ONNXImporter.load(bytes: try ONNXExporter.serialize(m), baseDirectory: nil)
    }

    func testValidationReportsFirstOffender() {
        assertInvalid({ try self.reimport(self.model([
            Node(name: "a", opType: "Relu", inputs: ["X"], outputs: ["T"]),
            Node(name: "b", opType: "Add", inputs: ["T", "nowhere"], outputs: ["Y"]),
        ])) }, mentions: ["node \"b\" (Add)", "'nowhere'"])
        assertInvalid({ try self.reimport(self.model([
            Node(name: "a", opType: "Relu", inputs: ["X"], outputs: ["Y"]),
            Node(name: "b", opType: "Relu", inputs: ["W"], outputs: ["Y"]),
        ])) }, mentions: ["'Y'", "produced twice", "node \"a\"", "node \"b\""])
        assertInvalid({ try self.reimport(self.model([
            Node(name: "a", opType: "Relu", inputs: ["X"], outputs: ["W"]),
        ], outputs: ["W"])) }, mentions: ["node \"a\"", "'W'", "initializer"])
        assertInvalid({ try self.reimport(self.model([
            Node(name: "a", opType: "Relu", inputs: ["X"], outputs: ["T"]),
        ])) }, mentions: ["output 'Y'", "not produced"])
        assertInvalid({ try self.reimport(self.model([
            Node(name: "a", opType: "", inputs: ["X"], outputs: ["Y"]),
        ])) }, mentions: ["node \"a\"", "no op_type"])
        // Subgraphs see outer values, but not undefined ones.
        let inner = Graph(name: "body", nodes: [Node(name: "in", opType: "Add", inputs: ["X", "ghost"], outputs: ["Z"])],
                          outputs: [ValueInfo(name: "Z", type: TensorType(.float, nil))])
        assertInvalid({ try self.reimport(self.model([
            Node(name: "if", opType: "If", inputs: ["X"], outputs: ["Y"], attributes: ["then_branch": .graph(inner)]),
        ])) }, mentions: ["node \"if\" (If)", "then_branch", "node \"in\" (Add)", "'ghost'"])
    }

    // MARK: export

    func testRoundTripIsExact() throws {
        for name in ["two_node.onnx", "attributes.onnx", "external/model.onnx"] {
            let m = try ONNXImporter.load(contentsOf: fixture(name))
            let bytes = try ONNXExporter.serialize(m)
            let back = try ONNXImporter.load(bytes: bytes, baseDirectory: nil)
            assertEqual(m, back, name)
            XCTAssertEqual(try ONNXExporter.serialize(back), bytes, "\(name): serialisation is deterministic")
        }
    }

    func testWriteWithExternalData() throws {
        let dir = try tempDir()
        let m = try ONNXImporter.load(contentsOf: fixture("attributes.onnx"))
        try ONNXExporter.write(m, to: dir + "/inline.onnx")
        try ONNXExporter.write(m, to: dir + "/ext.onnx", externalDataThreshold: 8)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/inline.onnx.data"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/ext.onnx.data"))
        assertEqual(m, try ONNXImporter.load(contentsOf: dir + "/inline.onnx"), "inline")
        assertEqual(m, try ONNXImporter.load(contentsOf: dir + "/ext.onnx"), "external")
        // Nothing but the two outputs and their data file is left behind (no temp files).
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(files, ["ext.onnx", "ext.onnx.data", "inline.onnx"])
        // Overwriting is atomic and leaves a loadable file.
        try ONNXExporter.write(m, to: dir + "/inline.onnx")
        assertEqual(m, try ONNXImporter.load(contentsOf: dir + "/inline.onnx"), "rewritten")
    }

    func testTensorFileRoundTrip() throws {
        let dir = try tempDir()
        let tensors: [(String, Tensor)] = [
            ("f", Tensor([Float(1.5), -0.0, .infinity, .nan], shape: [2, 2])),
            ("d", Tensor([1e-300, -2.0], shape: [2])),
            ("h", Tensor([Float16(1.5), -2], shape: [2, 1])),
            ("bf", Tensor([BFloat16(3.0)], shape: [])),
            ("i8", Tensor([Int8(-1), 5, 127], shape: [3])),
            ("u16", Tensor([UInt16(9)], shape: [1])),
            ("i32", Tensor([Int32.min], shape: [1])),
            ("i64", Tensor([Int64.max, 0], shape: [2])),
            ("u32", Tensor([UInt32.max], shape: [1])),
            ("u64", Tensor([UInt64(7)], shape: [1])),
            ("b", Tensor([true, false], shape: [2])),
            ("s", Tensor(strings: ["", "é"], shape: [2])),
            ("empty", Tensor([Float](), shape: [0])),
        ]
        for (name, t) in tensors {
            let path = dir + "/\(name).pb"
            try ONNXExporter.writeTensorFile(t, name: name, to: path)
            let back = try ONNXImporter.readTensorFile(path)
            XCTAssertEqual(back.name, name)
            assertEqual(t, back.tensor, name)
        }
    }

    // MARK: reference models (only when ../shared is present)

    func testReferenceSegFormerExports() throws {
        let dir = try SharedFixtures.path("reference/segformer-b0-ade") + "/"
        // Counts from python's onnx package (onnx.load(...).graph), independent of this importer.
        let expected: [(String, nodes: Int, initializers: Int, opset: Int, parameters: Int)] = [
            ("model.op17.onnx", 1407, 204, 17, 3_752_438),
            ("model.op14.onnx", 1707, 204, 14, 3_752_438),
            ("model.op18-dynamo.onnx", 434, 247, 18, 3_752_442),
        ]
        for (file, nodes, inits, opset, params) in expected {
            let m = try ONNXImporter.load(contentsOf: dir + file)
            XCTAssertEqual(m.graph.nodes.count, nodes, file)
            XCTAssertEqual(m.graph.initializers.count, inits, file)
            XCTAssertEqual(m.opset, opset, file)
            XCTAssertEqual(m.graph.parameterCount, params, file)
            XCTAssertEqual(m.graph.runtimeInputs.map(\.name), ["pixel_values"], file)
            XCTAssertEqual(m.graph.outputs.map(\.name), ["logits"], file)
            XCTAssertEqual(m.graph.initializers["m.segformer.stages.0.patch_embeddings.proj.weight"]?.shape, [32, 3, 7, 7], file)
            if file == "model.op17.onnx" {
                XCTAssertEqual(m.graph.inputs[0].type, TensorType(.float, [.symbol("batch"), .known(3), .known(512), .known(512)]))
                XCTAssertEqual(m.graph.nodes.first?.name, "/m/segformer/stages.0/patch_embeddings/proj/Conv")
                XCTAssertEqual(m.irVersion, 8)
                XCTAssertEqual(m.producerName, "pytorch")
                // Exported and re-imported, the model is the same.
                let back = try ONNXImporter.load(bytes: try ONNXExporter.serialize(m), baseDirectory: nil)
                assertEqual(m, back, file)
            }
            if file == "model.op18-dynamo.onnx" {
                XCTAssertEqual(m.graph.nodes.first?.name, "node_conv2d")
                XCTAssertEqual(m.graph.initializers["m.decode_head.linear_fuse.weight_bias"]?.byteCount, 1024)
            }
        }
        let (name, t) = try ONNXImporter.readTensorFile(dir + "test_data_set_0/input_0.pb")
        XCTAssertEqual(name, "pixel_values")
        XCTAssertEqual(t.shape, [1, 3, 512, 512])
        XCTAssertEqual(t.pointer(Float.self)[0], -1.0408012)
        XCTAssertEqual(t.pointer(Float.self)[12345], -0.48137406)
        XCTAssertEqual(t.buffer(Float.self).reduce(0.0) { $0 + Double($1) }, -70.661748944554, accuracy: 1e-6)
        let out = try ONNXImporter.readTensorFile(dir + "test_data_set_0/output_0.pb")
        XCTAssertEqual(out.name, "logits")
        XCTAssertEqual(out.tensor.shape, [1, 150, 128, 128])
    }
}

/// A small deterministic generator for the fuzz-style tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
