import Foundation
import GraphIR

// Cast and CastLike between float32/64, float16, bfloat16, every int/uint width, bool and string.
// float8 / 4-bit / 2-bit types are refused as unsupported. `saturate` only matters for float8, so it is
// accepted and ignored. Opsets up to 28 are accepted: versions after 13 only added element types (float8, 4-, 2-, 6-bit),
// which this kernel refuses by name.

extension OpRegistry {
    static let castOps: [OpSchema] = [
        OpSchema(OpType.cast, opsets: 6...28, inputs: 1...1, inferTypes: { ctx in
            guard let raw = try ctx.node.int("to"), let to = DataType(rawValue: Int32(truncatingIfNeeded: raw)) else { return [nil] }
            return [TensorType(to, ctx.type(0)?.shape)]
        }) { node, _ in
            let label = node.opType
            guard let raw = try node.int("to") else { throw SegFormerError.invalid("\(label): missing attribute 'to'") }
            guard let to = DataType(rawValue: Int32(truncatingIfNeeded: raw)), to != .undefined else {
                throw SegFormerError.invalid("\(label): attribute 'to' = \(raw) is not an ONNX element type")
            }
            try checkCastable(to, label)
            return ClosureKernel { inputs, ctx in [try castTensor(try inputs.required(0), to: to, label, ctx)] }
        }.withGradient { c in
            guard c.needs(0), let raw = try c.node.int("to"),
                  DataType(rawValue: Int32(truncatingIfNeeded: raw))?.isFloatingPoint == true else { return [nil] }
            return [try castGradient(c)]
        }
        .withSymbolicValue { ctx in
            // Shape arithmetic often casts between integer types; the contents stay the same.
            guard let raw = try ctx.node.int("to"), DataType(rawValue: Int32(truncatingIfNeeded: raw))?.isInteger == true else { return nil }
            return ctx.symbols(0)
        },
        OpSchema("CastLike", opsets: 15...28, inputs: 2...2, inferTypes: { ctx in
            guard let like = ctx.type(1) else { return [nil] }
            return [TensorType(like.dataType, ctx.type(0)?.shape)]
        }) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                [try castTensor(try inputs.required(0), to: try inputs.required(1).dataType, label, ctx)]
            }
        }.withGradient { c in [c.needs(0) ? try castGradient(c) : nil, nil] },
        // CastGrad(dY, X): dY converted to X's element type when X is floating point (only X's type is
        // read). Used when the graph does not record X's type.
        OpSchema("CastGrad", domain: trainingDomain, inputs: 2...2, inferTypes: { ctx in
            guard let g = ctx.type(0) else { return [nil] }
            guard let x = ctx.type(1) else { return [nil] }
            return [TensorType(x.dataType.isFloatingPoint ? x.dataType : g.dataType, g.shape)]
        }) { node, _ in
            let label = node.label
            return ClosureKernel { inputs, ctx in
                let g = try inputs.required(0), x = try inputs.required(1)
                return [x.dataType.isFloatingPoint ? try castTensor(g, to: x.dataType, label, ctx) : g]
            }
        },
    ]
}

/// Gradient of a float→float cast: the incoming gradient cast back to the input's float type. An
/// integer or bool input gets none.
private func castGradient(_ c: GradientContext) throws -> String? {
    let g = try c.gradient()
    if let t = c.knownType(of: c.input(0)) {
        guard t.isFloatingPoint else { return nil }
        return c.builder.add1(OpType.cast, [g], attributes: ["to": .int(Int(t.rawValue))])
    }
    return c.builder.add1("CastGrad", domain: trainingDomain, [g, c.input(0)])
}

func checkCastable(_ t: DataType, _ label: String) throws {
    guard t == .string || t == .bool || t.isFloatingPoint || t.isInteger else {
        throw SegFormerError.unsupported("\(label): cannot convert to or from \(t)")
    }
}
