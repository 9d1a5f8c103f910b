import GraphIR

/// Element strides of row-major tensors: the one place they are computed.
enum Strides {
    /// Row-major (contiguous) element strides of `shape`.
    static func rowMajor(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for k in stride(from: shape.count - 1, through: 0, by: -1) {
            s[k] = acc
            acc *= shape[k]
        }
        return s
    }

    /// Strides that read a row-major tensor of `shape` as if broadcast (numpy rules, right-aligned) to
    /// `output`: its own strides, 0 along the dims where it has size 1 and `output` does not, and 0
    /// along the leading dims it lacks. `output` must be a broadcast of `shape`.
    static func broadcast(_ shape: [Int], to output: [Int]) -> [Int] {
        let rank = output.count
        var s = [Int](repeating: 0, count: rank)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            let o = i + rank - shape.count
            s[o] = (shape[i] == 1 && output[o] != 1) ? 0 : acc
            acc *= shape[i]
        }
        return s
    }
}
