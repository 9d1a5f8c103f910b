import GraphIR

/// Axis arguments (ONNX counts negative axes from the end): the one place they are checked.
enum Axes {
    /// `axis` in [-rank, rank) → [0, rank). With `splitPoint`, `axis` names a point between
    /// dimensions (Flatten) and may also be rank. With `scalarAsVector`, a scalar (rank 0) takes axis
    /// 0 / -1 as if it were a vector (the softmax/normalization family).
    static func normalise(_ axis: Int, rank: Int, splitPoint: Bool = false, scalarAsVector: Bool = false,
                          _ label: String) throws -> Int {
        let r = scalarAsVector ? max(rank, 1) : rank
        guard axis >= -r && axis < (splitPoint ? r + 1 : r) else {
            throw SegFormerError.invalid("\(label): axis \(axis) is out of range for rank \(rank)")
        }
        return axis < 0 ? axis + r : axis
    }

    /// Normalised axes, in the given order; a repeated axis throws.
    static func normalise(_ axes: [Int], rank: Int, _ label: String) throws -> [Int] {
        let out = try axes.map { try normalise($0, rank: rank, label) }
        guard Set(out).count == out.count else {
            throw SegFormerError.invalid("\(label): repeated axis in \(axes)")
        }
        return out
    }

    /// Normalised axes as a set; repeats are allowed (the reductions accept them).
    static func set(_ axes: [Int], rank: Int, _ label: String) throws -> Set<Int> {
        Set(try axes.map { try normalise($0, rank: rank, label) })
    }
}
