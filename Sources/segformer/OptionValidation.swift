import ArgumentParser
import GraphIR

// Every numeric option of every command is checked here, once, before the command runs: a bad value
// is a usage error (exit 64) naming the option, never a trap, a hang or a NaN model later on.
// Intervals (`--checkpoint-every`, `--eval-every`) are at least 1; there is no "0 = never".

/// `OptionRange`'s checks (shared with the library's option types), thrown as ArgumentParser usage errors.
enum OptionCheck {
    static func atLeast(_ minimum: Int, _ options: KeyValuePairs<String, Int?>) throws {
        try usageError { try OptionRange.atLeast(minimum, options) }
    }

    static func finite(_ options: KeyValuePairs<String, Double>, in range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude) throws {
        try usageError { try OptionRange.finite(options, in: range) }
    }

    /// A library check's error as a usage error (exit 64).
    static func usageError(_ check: () throws -> Void) throws {
        do { try check() } catch let e as SegFormerError { throw ValidationError(e.description) }
    }
}

extension Train {
    /// The library's checks of the job's options (`FineTuningOptions.validate`), as usage errors.
    func validate() throws {
        try OptionCheck.atLeast(1, ["epochs": epochs])   // checked even where --max-steps overrides it
        try OptionCheck.usageError { try fineTuningOptions().validate() }
    }
}

extension Evaluate {
    func validate() throws {
        try OptionCheck.atLeast(1, ["size": size])
        try OptionCheck.usageError { _ = try evaluationMode }
    }
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
    func validate() throws {
        try OptionCheck.atLeast(1, ["num-labels": numLabels])
        // Rates are probabilities below 1 (a rate of 1 would drop everything and scale the rest by 1/0).
        try OptionCheck.finite(["drop-path-rate": dropPathRate ?? 0, "classifier-dropout": classifierDropout ?? 0,
                                "hidden-dropout": hiddenDropout ?? 0, "attention-dropout": attentionDropout ?? 0],
                               in: 0...0.999_999)
    }
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
