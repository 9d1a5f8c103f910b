import GraphIR
import Foundation

/// How much arithmetic one run of a plan may take (`--max-work`, multiply-adds), checked by the
/// planner before running. Off by default: a model's size is its user's business. It exists for
/// services and harnesses that must not start a run that would take hours — e.g. a model whose fixed
/// input is 512 × 65536 pixels, whose attention is fine in memory (fused, tiled) but needs trillions
/// of multiply-adds. Process-wide like `MemoryBudget`.
public enum WorkBudget {
    nonisolated(unsafe) private static var explicitLimit: Double?
    private static let lock = NSLock()

    /// The limit in multiply-adds, nil for none.
    public static var limit: Double? {
        lock.lock(); defer { lock.unlock() }
        return explicitLimit
    }

    public static func setLimit(_ multiplyAdds: Double?) {
        lock.lock(); defer { lock.unlock() }
        explicitLimit = multiplyAdds
    }

    /// `n` multiply-adds as e.g. "3.2 G" (powers of 1000), for reports.
    public static func format(_ n: Double) -> String {
        let units = ["", " K", " M", " G", " T", " P"]
        var v = n, u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? String(format: "%.0f", v) : String(format: "%.1f%@", v, units[u])
    }
}

extension ExecutionPlan {
    /// The multiply-adds of one run, by the ops' work rules (contractions only; nil entries — shapes
    /// known only when running — count as zero), and the step that does the most.
    public var estimatedWork: (total: Double, largestStep: Int) {
        var total = 0.0, largest = (work: -1.0, step: -1)
        for (k, step) in steps.enumerated() {
            let node = compiled.graph.nodes[step.nodeIndex]
            guard let rule = OpRegistry.schema(domain: node.domain, opType: node.opType)?.work else { continue }
            let shapes: ([Int]) -> [[Int]?] = { $0.map { $0 >= 0 ? self.slotTypes[$0]?.knownShape : nil } }
            guard let w = rule(node, shapes(step.inputs), shapes(step.outputs)), w.isFinite else { continue }
            total += w
            if w > largest.work { largest = (w, k) }
        }
        return (total, largest.step)
    }

    /// Throws when `estimatedWork` is above `WorkBudget.limit`, naming the node that does the most.
    func checkWorkBudget() throws {
        guard let limit = WorkBudget.limit else { return }
        let work = estimatedWork
        guard work.total > limit, work.largestStep >= 0 else { return }
        throw SegFormerError.invalid("running the model needs about \(WorkBudget.format(work.total)) multiply-adds (most in \(describeStep(work.largestStep))), above the work budget of \(WorkBudget.format(limit)) (--max-work)")
    }
}
