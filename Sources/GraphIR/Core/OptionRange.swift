/// Range checks of numeric options, named as on the command line (`--lr`): the one implementation the
/// CLI's `validate()` and the library's option types (`TrainerOptions`, `FineTuningOptions`) share.
public enum OptionRange {
    /// Each present value must be at least `minimum`.
    public static func atLeast(_ minimum: Int, _ options: KeyValuePairs<String, Int?>) throws {
        for case let (name, value?) in options where value < minimum {
            throw SegFormerError.invalid("--\(name) must be at least \(minimum), got \(value)")
        }
    }

    /// Each value must be finite and in `range` (default: ≥ 0).
    public static func finite(_ options: KeyValuePairs<String, Double>,
                              in range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude) throws {
        for (name, value) in options {
            guard value.isFinite else { throw SegFormerError.invalid("--\(name) must be a finite number, got \(value)") }
            guard range.contains(value) else {
                let bounds = range.upperBound == .greatestFiniteMagnitude ? "at least \(range.lowerBound)"
                    : "in \(range.lowerBound)…\(range.upperBound)"
                throw SegFormerError.invalid("--\(name) must be \(bounds), got \(value)")
            }
        }
    }
}
