import XCTest
import GraphIR
@testable import Runtime

/// Symbolic type rules of the normalization / softmax / reduction / resize families.
final class NormOpsTypeInferenceTests: XCTestCase {
    func infer(_ op: String, opset: Int, inputs: [TensorType?], constants: [Tensor?] = [],
               attributes: [String: Attribute] = [:], outputs: Int = 1) throws -> [TensorType?] {
        let node = Node(name: "n", opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "i\($0)" },
                        outputs: (0..<outputs).map { "o\($0)" }, attributes: attributes)
        guard let rule = OpRegistry.schema(domain: "", opType: op)?.inferTypes else { XCTFail("no rule for \(op)"); return [] }
        return try rule(TypeInferenceContext(node: node, opset: opset, inputTypes: inputs, constantInputs: constants))
    }

    let batch = Dim.symbol("batch")

    func testSoftmaxAndLayerNormKeepShape() throws {
        let t = TensorType(.float, [batch, .known(16384), .known(32)])
        XCTAssertEqual(try infer("Softmax", opset: 13, inputs: [t])[0], t)
        let ln = try infer("LayerNormalization", opset: 17, inputs: [t, TensorType(.float, known: [32]), TensorType(.float, known: [32])], outputs: 3)
        XCTAssertEqual(ln[0], t)
        XCTAssertEqual(ln[1], TensorType(.float, [batch, .known(16384), .known(1)]))
    }

    func testReduceMeanWithConstantAxes() throws {
        let t = TensorType(.float, [batch, .known(256), .known(32)])
        let axes = Tensor([Int64(-1)], shape: [1])
        XCTAssertEqual(try infer("ReduceMean", opset: 18, inputs: [t, TensorType(.int64, known: [1])], constants: [nil, axes])[0],
                       TensorType(.float, [batch, .known(256), .known(1)]))
        XCTAssertEqual(try infer("ReduceMean", opset: 13, inputs: [t], attributes: ["axes": .ints([1]), "keepdims": .int(0)])[0],
                       TensorType(.float, [batch, .known(32)]))
        // axes input not constant: shape unknown
        XCTAssertNil(try infer("ReduceSum", opset: 13, inputs: [t, TensorType(.int64, known: [1])])[0]?.shape)
        XCTAssertEqual(try infer("ArgMax", opset: 13, inputs: [t], attributes: ["axis": .int(1), "keepdims": .int(0)])[0],
                       TensorType(.int64, [batch, .known(32)]))
    }

    func testResizeWithConstantSizesAndScales() throws {
        let t = TensorType(.float, [batch, .known(256), .known(16), .known(16)])
        let sizes = Tensor([Int64](arrayLiteral: 1, 256, 128, 128), shape: [4])
        let r = try infer("Resize", opset: 13, inputs: [t, nil, nil, TensorType(.int64, known: [4])], constants: [nil, nil, nil, sizes],
                          attributes: ["mode": .string("linear")])
        XCTAssertEqual(r[0], TensorType(.float, known: [1, 256, 128, 128]))
        let scales = Tensor([Float](arrayLiteral: 1, 1, 2, 2), shape: [4])
        let s = try infer("Resize", opset: 13, inputs: [t, nil, TensorType(.float, known: [4])], constants: [nil, nil, scales],
                          attributes: ["mode": .string("linear")])
        XCTAssertEqual(s[0], TensorType(.float, [batch, .known(256), .known(32), .known(32)]))
    }
}
