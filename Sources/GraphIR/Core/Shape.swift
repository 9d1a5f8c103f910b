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
