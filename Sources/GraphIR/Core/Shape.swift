/// One dimension of a value's shape: a number, or a name that stays symbolic until a run binds it
/// (`batch`, `height`, …). Unnamed unknown dimensions get a generated name such as `?3`.
public enum Dim: Hashable, Sendable, CustomStringConvertible {
    case known(Int)
    case symbol(String)

    public var value: Int? { if case .known(let v) = self { return v } else { return nil } }
    public var description: String {
        switch self {
        case .known(let v): return String(v)
        case .symbol(let s): return s
        }
    }
}

/// What the IR knows statically about a value: its element type and (possibly symbolic) shape.
/// `shape == nil` means even the rank is unknown.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
    public var dataType: DataType
    public var shape: [Dim]?

    public init(_ dataType: DataType, _ shape: [Dim]?) {
        self.dataType = dataType
        self.shape = shape
    }

    public init(_ dataType: DataType, known: [Int]) {
        self.init(dataType, known.map { .known($0) })
    }

    /// The concrete shape when every dimension is known.
    public var knownShape: [Int]? {
        guard let shape else { return nil }
        var out: [Int] = []
        for d in shape { guard let v = d.value else { return nil }; out.append(v) }
        return out
    }

    public var description: String {
        guard let shape else { return "\(dataType)[?]" }
        return "\(dataType)[\(shape.map(\.description).joined(separator: "×"))]"
    }
}

/// Integer arithmetic on dims, as the shape arithmetic of exported graphs does it (Add, Sub, Mul and
/// a flooring Div on shape tensors). Known operands give a number; otherwise a readable symbol.
public enum DimArithmetic: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", floorDivide = "/"

    public func apply(_ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value {
            switch self {
            case .add: return .known(x + y)
            case .subtract: return .known(x - y)
            case .multiply: return .known(x * y)
            case .floorDivide: return y == 0 ? .symbol("\(x)/0") : .known(Int((Double(x) / Double(y)).rounded(.down)))
            }
        }
        switch self {
        case .multiply where b.value == 1, .floorDivide where b.value == 1: return a
        case .multiply where a.value == 1: return b
        default: return .symbol("(\(a)\(rawValue)\(b))")
        }
    }
}
