import ArgumentParser

// Every numeric option of every command is checked here, once, before the command runs: a bad value
// is a usage error (exit 64) naming the option, never a trap, a hang or a NaN model later on.
// Intervals (`--checkpoint-every`, `--eval-every`) are at least 1; there is no "0 = never".

/// Range checks of option values, thrown as ArgumentParser usage errors.
enum OptionCheck {
    /// Each present value must be at least `minimum`.
    static func atLeast(_ minimum: Int, _ options: KeyValuePairs<String, Int?>) throws {
        for case let (name, value?) in options where value < minimum {
            throw ValidationError("--\(name) must be at least \(minimum), got \(value)")
        }
    }

    /// Each value must be finite and in `range`.
    static func finite(_ options: KeyValuePairs<String, Double>, in range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude) throws {
        for (name, value) in options {
            guard value.isFinite else { throw ValidationError("--\(name) must be a finite number, got \(value)") }
            guard range.contains(value) else {
                let bounds = range.upperBound == .greatestFiniteMagnitude ? "at least \(range.lowerBound)" : "in \(range.lowerBound)…\(range.upperBound)"
                throw ValidationError("--\(name) must be \(bounds), got \(value)")
            }
        }
    }
}

extension Train {
    func validate() throws {
        try OptionCheck.atLeast(1, ["epochs": epochs, "max-steps": maxSteps, "batch-size": batchSize,
                                    "gradient-accumulation": gradientAccumulation, "crop": crop, "size": size,
                                    "eval-every": evalEvery, "checkpoint-every": checkpointEvery])
        try OptionCheck.atLeast(0, ["warmup-steps": warmupSteps])
        try OptionCheck.finite(["lr": lr, "weight-decay": weightDecay, "head-lr-multiplier": headLrMultiplier])
    }
}

extension Evaluate {
    func validate() throws { try OptionCheck.atLeast(1, ["size": size]) }
}

extension Step {
    func validate() throws {
        try OptionCheck.atLeast(0, ["steps": steps])
        try OptionCheck.finite(["lr": lr, "weight-decay": weightDecay, "momentum": momentum])
        try OptionCheck.finite(["beta1": beta1, "beta2": beta2], in: 0...0.999_999_999)
        try OptionCheck.finite(["eps": eps], in: Double.leastNormalMagnitude...1)
    }
}

extension Init {
    func validate() throws { try OptionCheck.atLeast(1, ["num-labels": numLabels]) }
}

extension Bench {
    func validate() throws {
        try OptionCheck.atLeast(1, ["batch": batch, "height": height, "width": width, "iterations": iterations])
        try OptionCheck.atLeast(0, ["warmup": warmup])
    }
}

extension Predict {
    func validate() throws { try OptionCheck.atLeast(1, ["size": size]) }
}

extension Classify {
    func validate() throws { try OptionCheck.atLeast(1, ["top": top, "size": size]) }
}

extension DemoCommand {
    func validate() throws {
        try OptionCheck.atLeast(1, ["steps": steps, "train-images": trainImages])
        try OptionCheck.atLeast(0, ["validation-images": validationImages])
    }
}

extension TestModel {
    func validate() throws { try OptionCheck.finite(["atol": atol, "rtol": rtol]) }
}

extension DataOptions {
    func validate() throws {
        if data != nil && (images != nil || masks != nil) {
            throw ValidationError("give --data DIR (ADE layout) or --images DIR --masks DIR, not both")
        }
        if (images == nil) != (masks == nil) { throw ValidationError("--images and --masks go together") }
    }
}
