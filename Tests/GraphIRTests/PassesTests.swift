import XCTest
@testable import GraphIR

final class PassesTests: XCTestCase {
    private func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String? = nil) -> Node {
        Node(name: name ?? outputs.first ?? op, opType: op, inputs: inputs, outputs: outputs)
    }

    func testTopologicalOrderPutsProducersFirst() throws {
        let g = Graph(nodes: [node("Relu", ["b"], ["c"]), node("Neg", ["x"], ["a"]), node("Abs", ["a"], ["b"])],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [2]))],
                      outputs: [ValueInfo(name: "c", type: TensorType(.float, known: [2]))])
        XCTAssertEqual(try Passes.topologicalOrder(g).map(\.opType), ["Neg", "Abs", "Relu"])
    }

    func testCycleAndUndefinedInputAreReportedByName() {
        let cyc = Graph(nodes: [node("Neg", ["b"], ["a"], name: "n1"), node("Abs", ["a"], ["b"], name: "n2")],
                        outputs: [ValueInfo(name: "b", type: TensorType(.float, nil))])
        XCTAssertThrowsError(try Passes.topologicalOrder(cyc)) { e in
            XCTAssertTrue("\(e)".contains("cycle"), "\(e)")
        }
        let undef = Graph(nodes: [node("Neg", ["nowhere"], ["a"], name: "lonely")],
                          outputs: [ValueInfo(name: "a", type: TensorType(.float, nil))])
        XCTAssertThrowsError(try Passes.topologicalOrder(undef)) { e in
            XCTAssertTrue("\(e)".contains("lonely") && "\(e)".contains("nowhere"), "\(e)")
        }
    }

    func testIdentityRemovalRewiresConsumersAndKeepsOutputs() {
        let g = Graph(nodes: [node("Identity", ["x"], ["i1"]), node("Identity", ["i1"], ["i2"]),
                              node("Relu", ["i2"], ["r"]), node("Identity", ["r"], ["y"])],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, nil))],
                      outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))])
        let out = Passes.removeIdentities(g)
        XCTAssertEqual(out.nodes.map(\.opType), ["Relu", "Identity"])
        XCTAssertEqual(out.nodes[0].inputs, ["x"])
    }

    func testDeadNodesAndUnusedInitializersAreDropped() {
        var g = Graph(nodes: [node("Relu", ["x"], ["r"]), node("Neg", ["w"], ["unused"])],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, nil))],
                      outputs: [ValueInfo(name: "r", type: TensorType(.float, nil))])
        g.setInitializer("w", Tensor([Float(1)], shape: [1]))
        let out = Passes.removeDeadNodes(g)
        XCTAssertEqual(out.nodes.map(\.opType), ["Relu"])
        XCTAssertNil(out.initializers["w"])
    }

    /// IR-3 models list their initializers among the inputs; an unused one is still the input's default,
    /// so dropping it would make the input one that every run must feed (ONNX model suites: resnet50).
    func testAnUnusedInitializerThatIsAGraphInputStays() {
        var g = Graph(nodes: [node("Relu", ["x"], ["r"])],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, nil)),
                               ValueInfo(name: "w", type: TensorType(.float, known: [1]))],
                      outputs: [ValueInfo(name: "r", type: TensorType(.float, nil))])
        g.setInitializer("w", Tensor([Float(1)], shape: [1]))
        let out = Passes.removeDeadNodes(g)
        XCTAssertNotNil(out.initializers["w"])
        XCTAssertEqual(out.runtimeInputs.map(\.name), ["x"])
    }

    func testConstantFoldingEvaluatesOnlyConstantNodes() throws {
        var g = Graph(nodes: [node("Neg", ["w"], ["nw"]), node("Add", ["x", "nw"], ["y"])],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [2]))],
                      outputs: [ValueInfo(name: "y", type: TensorType(.float, known: [2]))])
        g.setInitializer("w", Tensor([Float(1), 2], shape: [2]))
        var evaluated: [String] = []
        let out = try Passes.foldConstants(g) { n, inputs in
            evaluated.append(n.opType)
            let v = inputs[0]!.toArray(Float.self).map { -$0 }
            return [Tensor(v, shape: [2])]
        }
        XCTAssertEqual(evaluated, ["Neg"])
        XCTAssertEqual(out.nodes.map(\.opType), ["Add"])
        XCTAssertEqual(out.initializers["nw"]?.toArray(Float.self), [-1, -2])
        XCTAssertNil(out.initializers["w"], "the folded-away initializer is no longer needed")
    }

    func testInitializerListedAsInputIsNotFolded() throws {
        var g = Graph(nodes: [node("Neg", ["w"], ["y"])],
                      inputs: [ValueInfo(name: "w", type: TensorType(.float, known: [1]))],
                      outputs: [ValueInfo(name: "y", type: TensorType(.float, known: [1]))])
        g.setInitializer("w", Tensor([Float(3)], shape: [1]))
        let out = try Passes.foldConstants(g) { _, _ in XCTFail("must not fold an overridable input"); return [] }
        XCTAssertEqual(out.nodes.count, 1)
    }
}

final class UntieInitializersTests: XCTestCase {
    /// An exporter merged two equal zero biases into one initializer reached through Identity and
    /// also used one name twice: every use must get its own tensor.
    func testMergedInitializersBecomeIndependent() throws {
        var g = Graph(nodes: [
            Node(name: "id", opType: "Identity", inputs: ["b"], outputs: ["head.1.bias"]),
            Node(name: "a0", opType: "Add", inputs: ["x", "b"], outputs: ["y0"]),
            Node(name: "a1", opType: "Add", inputs: ["x", "head.1.bias"], outputs: ["y1"]),
            Node(name: "a2", opType: "Add", inputs: ["y0", "b"], outputs: ["y2"]),
            Node(name: "s", opType: "Add", inputs: ["y1", "y2"], outputs: ["out"]),
        ], inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [2]))],
           outputs: [ValueInfo(name: "out", type: TensorType(.float, known: [2]))])
        g.setInitializer("b", Tensor([Float(0), 0], shape: [2]))
        let out = try Passes.untieInitializers(g)
        XCTAssertFalse(out.nodes.contains { $0.opType == "Identity" })
        let users = out.nodes.filter { $0.opType == "Add" && $0.name != "s" }.map { $0.inputs[1] }
        XCTAssertEqual(Set(users).count, 3, "three uses, three parameters: \(users)")
        XCTAssertTrue(users.contains("head.1.bias"), "the exporter's name for that use is kept")
        for name in users {
            XCTAssertEqual(out.initializers[name]?.toArray(Float.self), [0, 0])
        }
        let storages = users.map { ObjectIdentifier(out.initializers[$0]!.storage) }
        XCTAssertEqual(Set(storages).count, 3, "copies, not shared storage")
    }
}
