import GraphIR

// Shape rules shared by several op families.

/// The type rule of the gradient ops that take x's shape as input 1 (SliceGrad, TileGrad, ReduceGrad,
/// ResizeGrad): dY's element type at that shape, once the shape is a known constant.
func gradientTypeAtShapeInput(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
    guard let g = ctx.type(0), let shape = ctx.constant(1) else { return [nil] }
    return [TensorType(g.dataType, known: try shape.integers())]
}

/// Multidirectional (numpy) broadcasting of two concrete shapes. Shapes are right-aligned; each pair of
/// dimensions must be equal or one of them 1.
public func broadcastShapes(_ a: [Int], _ b: [Int]) throws -> [Int] {
    if a == b { return a }
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
            throw SegFormerError.invalid("shapes \(a) and \(b) cannot be broadcast together (dimension \(i) of the result: \(da) vs \(db))")
        }
    }
    return out
}

/// Broadcasting of several concrete shapes (left fold of the pairwise rule).
public func broadcastShapes(_ shapes: [[Int]]) throws -> [Int] {
    guard var out = shapes.first else { return [] }
    for s in shapes.dropFirst() { out = try broadcastShapes(out, s) }
    return out
}

/// Broadcasting of two symbolic shapes. A symbol against 1 stays the symbol; a symbol against a known
/// n > 1 becomes n (the run must bind it to n or 1); two different symbols give a combined symbol
/// `max(a,b)` because either may turn out to be 1. Known mismatches throw.
public func broadcastShapes(_ a: [Dim], _ b: [Dim]) throws -> [Dim] {
    if a == b { return a }
    let rank = max(a.count, b.count)
    var out = [Dim](repeating: .known(1), count: rank)
    for i in 0..<rank {
        let da: Dim = i < rank - a.count ? .known(1) : a[i - (rank - a.count)]
        let db: Dim = i < rank - b.count ? .known(1) : b[i - (rank - b.count)]
        switch (da, db) {
        case (.known(let x), .known(let y)):
            if x == y || y == 1 { out[i] = da } else if x == 1 { out[i] = db } else {
                throw SegFormerError.invalid("shapes \(a) and \(b) cannot be broadcast together (dimension \(i) of the result: \(x) vs \(y))")
            }
        case (.known(let x), .symbol):
            out[i] = x == 1 ? db : da
        case (.symbol, .known(let y)):
            out[i] = y == 1 ? da : db
        case (.symbol(let s), .symbol(let t)):
            out[i] = s == t ? da : .symbol("max(\(s),\(t))")
        }
    }
    return out
}

/// Symbolic broadcast of optional shapes: unknown rank anywhere gives unknown rank.
public func broadcastShapes(_ shapes: [[Dim]?]) throws -> [Dim]? {
    guard var out = shapes.first ?? nil else { return nil }
    for s in shapes.dropFirst() {
        guard let s else { return nil }
        out = try broadcastShapes(out, s)
    }
    return out
}
