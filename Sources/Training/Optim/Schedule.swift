import Foundation

/// Learning-rate schedules, as multipliers of the base rate per optimizer step (0-based), following
/// the HuggingFace `get_scheduler` definitions.
public enum LRSchedule: Sendable, Equatable {
    /// The base rate throughout.
    case constant
    /// Linear warm-up from 0 over `warmup` steps, then constant.
    case constantWithWarmup(warmup: Int)
    /// Linear warm-up, then linear decay to 0 at `total` steps.
    case linear(warmup: Int, total: Int)
    /// Linear warm-up, then (1 − progress)^power decay from the base rate to `endRate`
    /// (HF `polynomial`; the SegFormer paper uses power 1, end 0).
    case polynomial(warmup: Int, total: Int, power: Double, endRate: Double)

    /// The learning rate at `step` for base rate `base`.
    public func rate(at step: Int, base: Double) -> Double {
        switch self {
        case .constant:
            return base
        case .constantWithWarmup(let warmup):
            return step < warmup ? base * Double(step) / Double(max(1, warmup)) : base
        case .linear(let warmup, let total):
            if step < warmup { return base * Double(step) / Double(max(1, warmup)) }
            return base * max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .polynomial(let warmup, let total, let power, let endRate):
            if step < warmup { return base * Double(step) / Double(max(1, warmup)) }
            if step > total { return endRate }
            let decay = total - warmup
            let remaining = 1 - Double(step - warmup) / Double(max(1, decay))
            return (base - endRate) * pow(remaining, power) + endRate
        }
    }
}
