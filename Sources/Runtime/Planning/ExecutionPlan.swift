import Foundation
import GraphIR

/// What a plan is made for: the bound shape of every runtime input, plus the values of small
/// integer/bool inputs (they may decide shapes, e.g. a Reshape target fed as an input).
public struct InputBinding: Hashable, Sendable {
    public var shapes: [[Int]]
    public var integerValues: [[Int]]

    /// Integer and bool inputs up to this many elements are bound by value.
    static let valueBoundLimit = 64

    static func isBoundByValue(_ t: Tensor) -> Bool {
        (t.dataType.isInteger || t.dataType == .bool) && t.count <= valueBoundLimit
    }

    init(_ inputs: [ValueInfo], _ feeds: [String: Tensor]) {
        shapes = inputs.map { feeds[$0.name]?.shape ?? [] }
        integerValues = inputs.map { info in
            guard let t = feeds[info.name], InputBinding.isBoundByValue(t) else { return [] }
            return (try? t.integers()) ?? []
        }
    }
}

/// One node ready to execute: its kernel and the value slots it reads and writes.
struct Step {
    let nodeIndex: Int
    let kernel: Kernel
    let inputs: [Int]        // -1 for an absent optional input
    let outputs: [Int]       // -1 for an unused optional output
    /// Slots whose last reader is this step: dropped right after it runs, which returns their
    /// buffers to the pool for the next allocation (liveness-driven buffer reuse).
    var release: [Int] = []
    /// Outputs whose shape the plan relied on (a Shape of them was folded): checked after the run.
    var shapeChecks: [(slot: Int, shape: [Int])] = []
    /// Some output's size was unknown when planning (a data-dependent shape): the executor asks the
    /// op's shape rule again with the real inputs and checks the sizes against the memory budget
    /// before the kernel allocates.
    var checksOutputSizes = false
}

/// An execution plan for one input binding, made before anything runs: every value that depends only
/// on constants and input *shapes* is folded (shape arithmetic such as Shape → Gather → Unsqueeze →
/// Concat → Reshape collapses to constants); what is left runs in order, each value dropped after its
/// last reader. `report` prints it.
public final class ExecutionPlan {
    /// Values computed when the plan was made (folded constants), by slot.
    var foldedValues: [Int: Tensor] = [:]
    var steps: [Step] = []
    /// How many of the graph's nodes were folded away for this binding.
    public internal(set) var foldedNodeCount = 0
    /// Inferred type of every value for this binding, by slot (nil where no rule knows it).
    var slotTypes: [TensorType?] = []
    /// The compiled model the plan runs.
    let compiled: CompiledModel

    init(compiled: CompiledModel) { self.compiled = compiled }

    /// Nodes the plan runs on every call.
    public var stepCount: Int { steps.count }

    /// Graph outputs (by index) final before step k runs, at k = 0 (folded or fed), and after step k − 1
    /// ran, at k ≥ 1: the step that writes an output is its only writer, so from then on it is final.
    /// `Session.run(_:observer:)` reports them; a data-parallel step orders its gradient buckets by them.
    lazy var outputsFinished: [[Int]] = {
        var producedAt: [Int: Int] = [:]
        for (k, step) in steps.enumerated() { for s in step.outputs where s >= 0 { producedAt[s] = k + 1 } }
        var finished = [[Int]](repeating: [], count: steps.count + 1)
        for (i, output) in compiled.graph.outputs.enumerated() {
            finished[producedAt[compiled.slotOf[output.name]!] ?? 0].append(i)
        }
        return finished
    }()

    /// The step after which the graph output `name` is final (0: before the first step); nil when it is
    /// not a graph output.
    public func stepFinishing(output name: String) -> Int? {
        for (k, outputs) in outputsFinished.enumerated() where outputs.contains(where: { compiled.graph.outputs[$0].name == name }) {
            return k
        }
        return nil
    }

    /// Bytes of the values live at once, at the worst step: each step's outputs are counted from its
    /// allocation until its release. An upper bound (views such as Reshape share their input's
    /// buffer but are counted as copies); nil when some output's shape is not known before running.
    public var peakActivationBytes: Int? {
        let peak = activationPeak
        return peak.unsizedValues == 0 ? peak.bytes : nil
    }

    /// The activation peak: its bytes (saturating at Int.max when too large to count), the step
    /// (0-based) after which it is reached, and the values live there by name, largest first — what to
    /// shrink to lower the peak. Values whose size is only known at run time are left out (and counted).
    public var activationPeak: (bytes: Int, step: Int, values: [(name: String, bytes: Int)], unsizedValues: Int) {
        var live: [Int: Int] = [:], total = 0, unsized = 0
        var peak = (bytes: 0, step: -1, live: [Int: Int]())
        for (k, step) in steps.enumerated() {
            for s in step.outputs where s >= 0 {
                guard slotTypes[s]?.knownShape != nil else { unsized += 1; continue }
                let bytes = self.bytes(of: s) ?? .max   // a shape too large to count in bytes
                live[s] = bytes
                total = total.addingReportingOverflow(bytes).overflow ? .max : total + bytes
            }
            if total > peak.bytes || peak.step < 0 { peak = (total, k, live) }
            for s in step.release {
                let bytes = live.removeValue(forKey: s) ?? 0
                if total != .max { total -= bytes }
            }
        }
        let names = compiled.slotNames
        let values = peak.live.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { (name: names[$0.key], bytes: $0.value) }
        return (peak.bytes, peak.step, values, unsized)
    }

    /// The node a step runs, as "op name" (for reports).
    public func describeStep(_ k: Int) -> String {
        let node = compiled.graph.nodes[steps[k].nodeIndex]
        return "\(node.opType) \(node.name.isEmpty ? "-" : node.name)"
    }

    /// Throws when the activation peak known before running is above `MemoryBudget.limit`, naming the
    /// node at the peak and its largest output (and, first, when a shape rule gave a negative dimension).
    func checkMemoryBudget() throws {
        for step in steps {
            for s in step.outputs where s >= 0 {
                guard let shape = slotTypes[s]?.knownShape, shape.contains(where: { $0 < 0 }) else { continue }
                let node = compiled.graph.nodes[step.nodeIndex]
                throw SegFormerError.invalid("\(node.label): output '\(compiled.slotNames[s])' would have the shape \(shape), with a negative dimension")
            }
        }
        let peak = activationPeak
        guard peak.step >= 0, peak.bytes > MemoryBudget.limit else { return }
        let step = steps[peak.step]
        let node = compiled.graph.nodes[step.nodeIndex]
        let largest = step.outputs.filter { $0 >= 0 }.max { (bytes(of: $0) ?? .max) < (bytes(of: $1) ?? .max) }
        var what = "running the model (peak at \(node.label)"
        if let s = largest {
            what += ", whose output '\(compiled.slotNames[s])' \(slotTypes[s].map { "\($0)" } ?? "?") takes \(bytes(of: s).map(formatBytes) ?? "more than can be counted")"
        }
        what += ")"
        try MemoryBudget.require(peak.bytes == .max ? nil : peak.bytes, for: what)
    }

    func bytes(of slot: Int) -> Int? {
        guard let type = slotTypes[slot], let shape = type.knownShape, type.dataType.byteSize != nil else { return nil }
        return Tensor.checkedByteCount(shape, type.dataType)
    }

    /// The plan as text: one line per step (op, node, output types and sizes, values freed), then the
    /// totals.
    public func report() -> String {
        let names = compiled.slotNames
        var lines: [String] = []
        func describe(_ slot: Int) -> String {
            let type = slotTypes[slot].map { "\($0)" } ?? "?"
            let size = bytes(of: slot).map { " " + formatBytes($0) } ?? ""
            return "\(names[slot]): \(type)\(size)"
        }
        for (k, step) in steps.enumerated() {
            let node = compiled.graph.nodes[step.nodeIndex]
            let outs = step.outputs.filter { $0 >= 0 }.map(describe).joined(separator: ", ")
            var line = "\(k + 1)\t\(node.opType)\t\(node.name.isEmpty ? "-" : node.name) → \(outs)"
            if !step.release.isEmpty { line += "  [frees \(step.release.count)]" }
            lines.append(line)
        }
        lines.append("\(steps.count) nodes to run, \(foldedNodeCount) folded, \(foldedValues.count) folded values kept")
        lines.append("activation peak: " + (peakActivationBytes.map { formatBytes($0) + " (upper bound)" } ?? "unknown (some shapes are only known at run time)"))
        lines.append("work: about \(WorkBudget.format(estimatedWork.total)) multiply-adds (MatMul, Gemm, Conv, attention)")
        return lines.joined(separator: "\n")
    }
}
