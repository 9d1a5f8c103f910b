import GraphIR

/// Makes an execution plan for one input binding without running the model: it infers the concrete
/// type of every value from the bound input shapes (each op's own shape rule), folds every node whose
/// result depends only on constants and input *shapes*, and orders the rest with liveness.
///
/// A folded Shape/Size relies on an inferred shape; the plan records that shape and the executor
/// checks it when the value is produced, so a wrong shape rule is reported, never silently used.
public enum Planner {

    /// The plan for runtime inputs of the given shapes. Of `values` (e.g. a run's feeds) only the small
    /// integer inputs are kept: they are bound by value, as they may decide shapes. Folded nodes run
    /// here, once, on `context`.
    public static func plan(_ compiled: CompiledModel, shapes: [String: [Int]], values: [String: Tensor] = [:],
                            context: ExecutionContext = .singleThreaded) throws -> ExecutionPlan {
        let graph = compiled.graph
        let slotCount = compiled.slotNames.count
        let plan = ExecutionPlan(compiled: compiled)

        var inputTypes: [String: TensorType] = [:]
        for info in compiled.runtimeInputs {
            guard let shape = shapes[info.name] else {
                throw SegFormerError.invalid("planning: no shape given for input '\(info.name)' (\(info.type))")
            }
            inputTypes[info.name] = TensorType(values[info.name]?.dataType ?? info.type.dataType, known: shape)
        }
        let boundValues = values.filter { InputBinding.isBoundByValue($0.value) }
        let inferred = try TypeInference.infer(graph, opset: compiled.opset, inputTypes: inputTypes, constants: boundValues)
        plan.slotTypes = compiled.slotNames.map { inferred.types[$0] }

        // Values known now, by slot: initializers, value-bound inputs, then folded node outputs.
        var known = [Tensor?](repeating: nil, count: slotCount)
        for (s, t) in compiled.initializerSlots { known[s] = t }
        for info in graph.inputs {
            let s = compiled.slotOf[info.name]!
            if let t = boundValues[info.name] {
                known[s] = t
            } else if shapes[info.name] == nil {
                known[s] = graph.initializers[info.name]   // initializer default, not overridden
            }
        }
        func shape(of slot: Int) -> [Int]? { known[slot]?.shape ?? plan.slotTypes[slot]?.knownShape }

        var runSteps: [Step] = []
        var foldedSlots = Set<Int>()
        var shapeChecks: [Int: [Int]] = [:]
        for (i, node) in graph.nodes.enumerated() {
            let schema = compiled.schemas[i]
            let ins = node.inputs.map { $0.isEmpty ? -1 : compiled.slotOf[$0]! }
            let outs = node.outputs.map { $0.isEmpty ? -1 : compiled.slotOf[$0]! }
            let present = ins.filter { $0 >= 0 }
            var results: [Tensor]? = nil
            do {
                if schema.isDeterministic, present.allSatisfy({ known[$0] != nil }), !exceedsFoldLimit(outs, plan) {
                    results = try compiled.kernels[i].run(ins.map { $0 < 0 ? nil : known[$0] }, context)
                } else if let fromShape = schema.valueFromShape, let first = present.first, let s = shape(of: first) {
                    results = [try fromShape(node, compiled.opset, s)]
                    if known[first] == nil { shapeChecks[first] = s }
                }
            } catch let e as SegFormerError {
                throw e.prefixed("\(node.label) (while planning)")
            }
            if let results {
                for (k, s) in outs.enumerated() where s >= 0 && k < results.count {
                    known[s] = results[k]
                    foldedSlots.insert(s)
                    plan.slotTypes[s] = TensorType(results[k].dataType, known: results[k].shape)
                }
                continue
            }
            runSteps.append(Step(nodeIndex: i, kernel: compiled.kernels[i], inputs: ins, outputs: outs))
        }

        // Keep the folded values the remaining steps read, and folded graph outputs.
        let outputSlots = Set(compiled.outputSlots)
        var needed = outputSlots
        for step in runSteps { for s in step.inputs where s >= 0 { needed.insert(s) } }
        for s in foldedSlots where needed.contains(s) { plan.foldedValues[s] = known[s] }
        plan.foldedNodeCount = graph.nodes.count - runSteps.count

        for k in runSteps.indices {
            runSteps[k].checksOutputSizes = runSteps[k].outputs.contains { $0 >= 0 && plan.slotTypes[$0]?.knownShape == nil }
            runSteps[k].shapeChecks = runSteps[k].outputs.compactMap { s in
                s >= 0 ? shapeChecks[s].map { (s, $0) } : nil
            }
        }
        plan.steps = Liveness.withReleases(runSteps, slotCount: slotCount,
                                           keep: { outputSlots.contains($0) || known[$0] != nil })
        try plan.checkMemoryBudget()
        try plan.checkWorkBudget()
        return plan
    }

    /// Whether some output's inferred size is above `MemoryBudget.foldLimitBytes`: such a node runs
    /// with the plan (its size counted in the activation peak) instead of being folded now.
    static func exceedsFoldLimit(_ outs: [Int], _ plan: ExecutionPlan) -> Bool {
        outs.contains { s in
            guard s >= 0, let type = plan.slotTypes[s], let shape = type.knownShape else { return false }
            return (Tensor.checkedByteCount(shape, type.dataType) ?? .max) > MemoryBudget.foldLimitBytes
        }
    }
}

/// When each value can be dropped.
enum Liveness {
    /// `steps` with each slot released right after its last reader (or, if nothing reads it, right
    /// after its producer), except the slots `keep` holds on to.
    static func withReleases(_ steps: [Step], slotCount: Int, keep: (Int) -> Bool) -> [Step] {
        var steps = steps
        var lastUse = [Int](repeating: -1, count: slotCount)
        for (k, step) in steps.enumerated() {
            for s in step.inputs where s >= 0 { lastUse[s] = k }
            for s in step.outputs where s >= 0 && lastUse[s] < k { lastUse[s] = k }   // unread outputs die at once
        }
        for s in 0..<slotCount where lastUse[s] >= 0 && !keep(s) { steps[lastUse[s]].release.append(s) }
        return steps
    }
}
