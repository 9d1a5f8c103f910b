/// Element types, numbered as ONNX's TensorProto.DataType so import/export is a cast.
public enum DataType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case undefined = 0
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
    case string = 8, bool = 9, float16 = 10, double = 11, uint32 = 12, uint64 = 13
    case complex64 = 14, complex128 = 15, bfloat16 = 16
    case float8e4m3fn = 17, float8e4m3fnuz = 18, float8e5m2 = 19, float8e5m2fnuz = 20
    case uint4 = 21, int4 = 22, float4e2m1 = 23, float8e8m0 = 24, uint2 = 25, int2 = 26

    /// Bytes per element for the types this runtime stores; nil for types it cannot hold.
    public var byteSize: Int? {
        switch self {
        case .float, .int32, .uint32: return 4
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .int64, .uint64, .double: return 8
        case .string: return MemoryLayout<String>.stride
        default: return nil
        }
    }

    public var isFloatingPoint: Bool {
        self == .float || self == .double || self == .float16 || self == .bfloat16
    }

    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .int32, .int64, .uint32, .uint64: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .undefined: return "undefined"
        case .float: return "float32"
        case .double: return "float64"
        case .float16: return "float16"
        case .bfloat16: return "bfloat16"
        case .string: return "string"
        case .bool: return "bool"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .complex64: return "complex64"
        case .complex128: return "complex128"
        case .float8e4m3fn: return "float8e4m3fn"
        case .float8e4m3fnuz: return "float8e4m3fnuz"
        case .float8e5m2: return "float8e5m2"
        case .float8e5m2fnuz: return "float8e5m2fnuz"
        case .uint4: return "uint4"
        case .int4: return "int4"
        case .float4e2m1: return "float4e2m1"
        case .float8e8m0: return "float8e8m0"
        case .uint2: return "uint2"
        case .int2: return "int2"
        }
    }
}

/// bfloat16 stored as its raw 16 bits (the top half of a float32).
public struct BFloat16: Sendable, Equatable {
    public var bits: UInt16
    public init(bits: UInt16) { self.bits = bits }
    /// Round-to-nearest-even, NaN kept quiet.
    public init(_ value: Float) {
        let b = value.bitPattern
        if value.isNaN { bits = UInt16(truncatingIfNeeded: (b >> 16) | 0x40); return }
        let rounding = ((b >> 16) & 1) &+ 0x7FFF
        bits = UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
    }
    public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
}

/// Swift types that can be the elements of a `Tensor`.
public protocol TensorElement {
    static var dataType: DataType { get }
}
extension Float: TensorElement { public static var dataType: DataType { .float } }
extension Double: TensorElement { public static var dataType: DataType { .double } }
extension Float16: TensorElement { public static var dataType: DataType { .float16 } }
extension BFloat16: TensorElement { public static var dataType: DataType { .bfloat16 } }
extension Int8: TensorElement { public static var dataType: DataType { .int8 } }
extension Int16: TensorElement { public static var dataType: DataType { .int16 } }
extension Int32: TensorElement { public static var dataType: DataType { .int32 } }
extension Int64: TensorElement { public static var dataType: DataType { .int64 } }
extension UInt8: TensorElement { public static var dataType: DataType { .uint8 } }
extension UInt16: TensorElement { public static var dataType: DataType { .uint16 } }
extension UInt32: TensorElement { public static var dataType: DataType { .uint32 } }
extension UInt64: TensorElement { public static var dataType: DataType { .uint64 } }
extension Bool: TensorElement { public static var dataType: DataType { .bool } }
extension String: TensorElement { public static var dataType: DataType { .string } }
