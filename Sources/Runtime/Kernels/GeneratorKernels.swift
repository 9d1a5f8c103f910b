import Foundation
import GraphIR

// CPU kernels of ConstantOfShape and Range: the schemas are in Ops/Generators.swift.
enum GeneratorKernels {
    /// A tensor of `shape` with every element equal to the single element of `value`.
    static func filled(_ value: Tensor, shape: [Int], _ context: ExecutionContext) throws -> Tensor {
        var out = Tensor(uninitialized: value.dataType, shape: shape)
        let n = out.count
        if n == 0 { return out }
        if value.dataType == .string { out.strings = Array(repeating: value.strings[0], count: n); return out }
        let es = try Movement.elementSize(value.dataType)
        let src = UnsafeRawPointer(value.storage.pointer)
        func fill<T>(_: T.Type) {
            let v = src.load(as: T.self)
            let d = out.pointer(T.self)
            context.parallelFor(n, minimumPerChunk: 1 << 16) { s, e in for i in s..<e { d[i] = v } }
        }
        // The width switch of Gather's and Pad's kernels: one per kernel, since Swift closures cannot be generic.
        switch es {
        case 1: fill(UInt8.self)
        case 2: fill(UInt16.self)
        case 4: fill(UInt32.self)
        default: fill(UInt64.self)
        }
        return out
    }

    /// output[i] = start + i·delta for i < rangeCount(start, limit, delta), in the inputs' type.
    static func range(_ start: Tensor, _ limit: Tensor, _ delta: Tensor, _ label: String) throws -> Tensor {
        let type = start.dataType
        let n = try OpRegistry.rangeCount(start, limit, delta, label)
        let out = Tensor(uninitialized: type, shape: [n])
        if type.isInteger {
            let s = try start.integers()[0], d = try delta.integers()[0]
            func fill<T: FixedWidthInteger>(_: T.Type) {
                let p = out.pointer(T.self)
                for i in 0..<n { p[i] = T(truncatingIfNeeded: s &+ i &* d) }
            }
            switch type {
            case .int8: fill(Int8.self)
            case .int16: fill(Int16.self)
            case .int32: fill(Int32.self)
            case .int64: fill(Int64.self)
            case .uint8: fill(UInt8.self)
            case .uint16: fill(UInt16.self)
            case .uint32: fill(UInt32.self)
            default: fill(UInt64.self)
            }
            return out
        }
        let s = try start.doubles()[0], d = try delta.doubles()[0]
        switch type {
        case .float:
            let p = out.pointer(Float.self), fs = Float(s), fd = Float(d)
            for i in 0..<n { p[i] = fs + Float(i) * fd }
        case .double:
            let p = out.pointer(Double.self)
            for i in 0..<n { p[i] = s + Double(i) * d }
        case .float16:
            let p = out.pointer(Float16.self), fs = Float16(s), fd = Float16(d)
            for i in 0..<n { p[i] = fs + Float16(i) * fd }
        default:
            let p = out.pointer(BFloat16.self), fs = Float(s), fd = Float(d)
            for i in 0..<n { p[i] = BFloat16(fs + Float(i) * fd) }
        }
        return out
    }
}
