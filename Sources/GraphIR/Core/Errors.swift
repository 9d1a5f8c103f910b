/// Every failure the library reports. Each message names the thing at fault
/// (file, node, op, tensor, shape) so a user can act on it.
public enum SegFormerError: Error, CustomStringConvertible, Equatable {
    /// The model, a tensor file or an input is malformed or inconsistent.
    case invalid(String)
    /// Well-formed, but uses an op, attribute or element type this runtime does not implement.
    case unsupported(String)
    /// Reading or writing a file failed.
    case io(String)

    public var description: String {
        switch self {
        case .invalid(let m): return m
        case .unsupported(let m): return "unsupported: \(m)"
        case .io(let m): return m
        }
    }

    public var isUnsupported: Bool { if case .unsupported = self { return true } else { return false } }

    /// The same error with a context prefix, e.g. `node "/conv/Conv" (Conv): ...`.
    public func prefixed(_ context: String) -> SegFormerError {
        switch self {
        case .invalid(let m): return .invalid("\(context): \(m)")
        case .unsupported(let m): return .unsupported("\(context): \(m)")
        case .io(let m): return .io("\(context): \(m)")
        }
    }
}
