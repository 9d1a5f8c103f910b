import GraphIR

/// Max |a − b| over two float tensors of the same shape.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
    let x = a.pointer(Float.self), y = b.pointer(Float.self)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(x[i] - y[i])) }
    return m
}

/// Euclidean norm of a float tensor, in Double.
public func norm(_ t: Tensor) -> Double {
    let p = t.pointer(Float.self)
    var s = 0.0
    for i in 0..<t.count { s += Double(p[i]) * Double(p[i]) }
    return s.squareRoot()
}

public func normOfDifference(_ a: Tensor, _ b: Tensor) -> Double {
    let x = a.pointer(Float.self), y = b.pointer(Float.self)
    var s = 0.0
    for i in 0..<a.count { let d = Double(x[i]) - Double(y[i]); s += d * d }
    return s.squareRoot()
}
