import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// The counter-based random stream and the ops that draw from it, and BatchNormalization's training
/// forms (running statistics: ONNX's biased rule for ONNX runs, PyTorch's unbiased one for training).
final class RandomAndTrainingOpsTests: XCTestCase {
    /// Random123's known-answer vectors for philox4x32-10.
    func testPhiloxKnownAnswers() {
        XCTAssertEqual(Philox.block(counter: (0, 0, 0, 0), key: (0, 0)), SIMD4(0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8))
        XCTAssertEqual(Philox.block(counter: (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF), key: (0xFFFF_FFFF, 0xFFFF_FFFF)),
                       SIMD4(0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD))
        XCTAssertEqual(Philox.block(counter: (0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344), key: (0xA409_3822, 0x299F_31D0)),
                       SIMD4(0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1))
    }

    func randomUniformModel(seed: Float? = nil) -> Model {
        var attrs: [String: Attribute] = ["low": .float(-2), "high": .float(3)]
        if let seed { attrs["seed"] = .float(seed) }
        let g = Graph(nodes: [Node(name: "r", opType: "RandomUniformLike", inputs: ["x"], outputs: ["u"], attributes: attrs)],
                      inputs: [ValueInfo(name: "x", type: TensorType(.float, [.symbol("n")]))],
                      outputs: [ValueInfo(name: "u", type: TensorType(.float, [.symbol("n")]))])
        return Model(graph: g, opsetImports: ["": 17])
    }

    func testRandomUniformLikeIsSeededAndThreadIndependent() throws {
        let x = Tensor(zeros: .float, shape: [100_003])
        func draw(seed: UInt64, threads: Int, runs: Int = 1) throws -> Tensor {
            let s = try Session(model: randomUniformModel(), options: SessionOptions(threads: threads))
            s.context.random = RandomStream(seed: seed)
            var last: Tensor?
            for _ in 0..<runs { last = try s.run(["x": x])["u"] }
            return last!
        }
        let a = try draw(seed: 5, threads: 1)
        XCTAssertTrue(a.bitwiseEqual(try draw(seed: 5, threads: 2)), "thread count changes nothing")
        XCTAssertFalse(a.bitwiseEqual(try draw(seed: 6, threads: 2)), "the seed changes the numbers")
        XCTAssertFalse(a.bitwiseEqual(try draw(seed: 5, threads: 2, runs: 2)), "each run draws fresh numbers")
        let v = a.pointer(Float.self)
        var sum = 0.0
        for i in 0..<a.count { XCTAssertTrue(v[i] >= -2 && v[i] < 3); sum += Double(v[i]) }
        XCTAssertEqual(sum / Double(a.count), 0.5, accuracy: 0.03, "mean of U[-2, 3)")
    }

    /// Training-mode Dropout on float32 keeps element i exactly when its uniform from the stream — word
    /// i % 4 of Philox block i / 4 (counter: block, run; key: the node's), top 24 bits — is ≥ ratio, at
    /// any thread count, across chunk boundaries and a partial last block; kept elements are x·scale,
    /// dropped ones x·0 (NaN stays NaN), and DropoutGrad applies the same mask.
    func testDropoutMaskIsTheStreamsUniformsAtLeastTheRatio() throws {
        let n = 2 * RandomStream.chunkElements + 4_099
        let x = Tensor((0..<n).map { i in i == 7 ? Float.nan : Float(i % 13) - 6 }, shape: [n])
        let dy = Tensor((0..<n).map { Float($0 % 7) + 0.5 }, shape: [n])
        let stream = RandomStream(seed: 11, run: 3)
        let key = stream.key(node: "out0")   // SingleOp names the outputs out0, out1
        for ratio in [0.1, 0.25, 0.7] {
            var reference = [Bool]()
            for b in 0..<((n + 3) / 4) {
                let words = Philox.block(counter: (UInt32(b), 0, 3, 0), key: key)
                for lane in 0..<4 where reference.count < n { reference.append(Double(Philox.unitFloat(words[lane])) >= ratio) }
            }
            let scale = 1 / (1 - Float(ratio))
            let training = [Tensor(scalar: Float(ratio)), Tensor(scalar: true)]
            for threads in [1, 3] {
                let context = ExecutionContext(threads: threads)
                context.random = stream
                let out = try SingleOp.run("Dropout", inputs: [x] + training, outputCount: 2, opset: 13, context: context)
                let y = out[0].toArray(Float.self), mask = out[1].toArray(Bool.self)
                XCTAssertEqual(mask, reference, "ratio \(ratio), \(threads) threads: mask")
                XCTAssertTrue(y[7].isNaN)
                let xv = x.toArray(Float.self), dyv = dy.toArray(Float.self)
                let wrongY = (0..<n).filter { $0 != 7 && y[$0].bitPattern != (reference[$0] ? xv[$0] * scale : xv[$0] * 0).bitPattern }
                XCTAssertEqual(wrongY, [], "ratio \(ratio), \(threads) threads: outputs")
                let dx = try SingleOp.run("DropoutGrad", domain: trainingDomain, inputs: [dy, out[1]] + training,
                                          context: context)[0].toArray(Float.self)
                let wrongDx = (0..<n).filter { dx[$0] != (reference[$0] ? dyv[$0] * scale : 0) }
                XCTAssertEqual(wrongDx, [], "ratio \(ratio), \(threads) threads: gradient")
            }
        }
    }

    /// Training-mode BatchNormalization, one channel of 4 values {1, 2, 3, 6}: mean 3, biased variance
    /// 3.5, unbiased 14/3. ONNX's rule (conformance) moves running_var with 3.5, PyTorch's with 14/3.
    func testRunningVarianceRules() throws {
        let x = Tensor([Float(1), 2, 3, 6], shape: [2, 1, 2, 1])
        let inputs: [Tensor] = [x, Tensor([Float(1)], shape: [1]), Tensor([Float(0)], shape: [1]),
                                Tensor([Float(0.5)], shape: [1]), Tensor([Float(2)], shape: [1])]
        func run(_ op: String, domain: String, attrs: [String: Attribute], outputs: [String]) throws -> [String: Tensor] {
            let names = ["x", "s", "b", "m", "v"]
            let g = Graph(nodes: [Node(name: "bn", opType: op, domain: domain, inputs: names, outputs: outputs, attributes: attrs)],
                          inputs: names.map { ValueInfo(name: $0, type: TensorType(.float, nil)) },
                          outputs: outputs.map { ValueInfo(name: $0, type: TensorType(.float, nil)) })
            var opsets = ["": 15]
            if !domain.isEmpty { opsets[domain] = 1 }
            let session = try Session(model: Model(graph: g, opsetImports: opsets))
            return try session.run(Dictionary(uniqueKeysWithValues: zip(names, inputs)))
        }
        let attrs: [String: Attribute] = ["momentum": .float(0.9), "training_mode": .int(1)]
        let onnx = try run("BatchNormalization", domain: "", attrs: attrs, outputs: ["y", "rm", "rv"])
        let torch = try run("BatchNormTraining", domain: trainingDomain, attrs: ["momentum": .float(0.9)], outputs: ["y", "rm", "rv"])
        XCTAssertEqual(onnx["rm"]!.pointer(Float.self)[0], 0.9 * 0.5 + 0.1 * 3, accuracy: 1e-6)
        XCTAssertEqual(torch["rm"]!.pointer(Float.self)[0], 0.9 * 0.5 + 0.1 * 3, accuracy: 1e-6)
        XCTAssertEqual(onnx["rv"]!.pointer(Float.self)[0], 0.9 * 2 + 0.1 * 3.5, accuracy: 1e-6)
        XCTAssertEqual(torch["rv"]!.pointer(Float.self)[0], Float(0.9 * 2 + 0.1 * 14.0 / 3), accuracy: 1e-6)
        // both normalise with the biased batch variance
        XCTAssertEqual(torch["y"]!.pointer(Float.self)[3], Float(3 / (3.5 + 1e-5).squareRoot()), accuracy: 1e-5)
        XCTAssertTrue(torch["y"]!.bitwiseEqual(onnx["y"]!))
    }
}
