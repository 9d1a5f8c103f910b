import GraphIR

/// Helpers shared by the shape/data-movement ops: element sizes, shape checks and the
/// symbolic-dimension arithmetic their type rules need.
enum Movement {
    /// Largest element count a shape op will allocate from values it computed (guards against lying
    /// attributes/inputs producing absurd sizes).
    static let maxElements = 1 << 34

    static func elementSize(_ t: DataType) throws -> Int {
        guard t != .string, let s = t.byteSize else {
            throw SegFormerError.unsupported("element type \(t) has no byte layout here")
        }
        return s
    }

    /// Checks a computed output shape: no negative dims and a sane element count.
    static func checkShape(_ shape: [Int], _ label: String) throws {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw SegFormerError.invalid("\(label): negative dimension in output shape \(shape)") }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            guard !o, m <= maxElements else {
                throw SegFormerError.invalid("\(label): output shape \(shape) is too large")
            }
            n = m
        }
    }

    /// A scalar (or 1-element) input read as an Int.
    static func scalarInt(_ t: Tensor, _ what: String, _ label: String) throws -> Int {
        let v = try t.integers()
        guard v.count == 1 else { throw SegFormerError.invalid("\(label): \(what) must hold one value, has shape \(t.shape)") }
        return v[0]
    }

    // MARK: symbolic dims

    /// The product of dims: known when all are known, otherwise a symbol naming the product
    /// (equal products get equal names, so later rules can still match them).
    static func product(_ dims: ArraySlice<Dim>) -> Dim {
        var known = 1
        var symbols: [String] = []
        for d in dims {
            switch d {
            case .known(let v): known *= v
            case .symbol(let s): symbols.append(s)
            }
        }
        if symbols.isEmpty || known == 0 { return .known(known) }
        if known == 1 && symbols.count == 1 { return .symbol(symbols[0]) }
        return .symbol(((known == 1 ? [] : [String(known)]) + symbols).joined(separator: "*"))
    }

    static func product(_ dims: [Dim]) -> Dim { product(dims[...]) }

    static func dims(_ shape: [Int]) -> [Dim] { shape.map { .known($0) } }
}
