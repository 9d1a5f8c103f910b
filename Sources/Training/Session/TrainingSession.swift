import Foundation
import GraphIR
import Runtime

/// Options for turning an imported model into a trainable one.
public struct TrainingOptions: Sendable {
    /// Initializers whose names contain any of these substrings stay frozen (not trained).
    public var freezePatterns: [String] = []
    /// Labels equal to this are ignored by the loss (HF `semantic_loss_ignore_index`).
    public var ignoreIndex: Int = 255
    /// Give each use of a merged initializer its own parameter (see `Passes.untieInitializers`).
    public var untieMergedInitializers = true
    public var threads: Int? = nil
    /// Seed of the random numbers of training-mode graphs (dropout masks, drop-path).
    public var seed: UInt64 = 0
    /// SyncBatchNorm (`--sync-batchnorm`): training-mode BatchNorms normalise with the statistics of the
    /// batches of all these processes together, and their backward sums its two per-channel sums over them
    /// (the kernels reach them through `ExecutionContext.crossProcessSum`). The gradient graph then also
    /// takes the loss's weight as an input (`lossWeightName`), because a process's share of the global loss
    /// must weight what flows back into those sums, not only its own gradients. nil: each process's own batch.
    public var batchNormProcesses: (any CrossProcessSum)?
    /// Run `OptimizingPipeline.trainingPasses` over the forward graph before differentiating it
    /// (fused attention, LayerNorm, GELU and MixFFN's depthwise conv over the tokens, whose gradient
    /// rules write the backward; the decode-head
    /// algebra, whose merged weights are nodes of the parameters) and `gradientGraphPasses` over the
    /// gradient graph after it (epilogue fusions); false trains the graph node by node as exported
    /// (`bench --train --no-optimize`).
    public var optimizingPasses = true
    public init(freezePatterns: [String] = [], ignoreIndex: Int = 255, untieMergedInitializers: Bool = true,
                threads: Int? = nil, seed: UInt64 = 0, optimizingPasses: Bool = true,
                batchNormProcesses: (any CrossProcessSum)? = nil) {
        self.freezePatterns = freezePatterns
        self.ignoreIndex = ignoreIndex
        self.untieMergedInitializers = untieMergedInitializers
        self.threads = threads
        self.seed = seed
        self.batchNormProcesses = batchNormProcesses
        self.optimizingPasses = optimizingPasses
    }
}

/// A SegFormer graph made trainable: its float initializers become parameters (graph inputs), the
/// HuggingFace loss is appended, and autodiff adds the backward pass; forward + backward run as one
/// planned graph.
///
/// Training-mode exports train as PyTorch trains them: BatchNormalization in training mode runs as
/// `BatchNormTraining` (batch statistics; PyTorch's running-statistics rule), and its running mean and
/// variance are model state ("buffers"), not parameters: each training step replaces them with the
/// values its forward pass computed. Dropout and drop-path draw from the session's seeded random
/// stream (`randomState`).
public final class TrainingSession {
    public private(set) var model: Model
    /// The current parameter values, owned by the session: they change only through `update(with:…)`
    /// and `loadParameters`, and are never handed out (readers get copies).
    private var values: [String: Tensor]
    /// Parameter names in the model's initializer order.
    public let parameterNames: [String]
    /// Running statistics of training-mode BatchNorms, owned like `values`; each step moves them.
    private var buffers: [String: Tensor]
    /// Buffer name → the graph output holding its value after a forward pass.
    public let bufferUpdates: [String: String]
    public let pixelValuesName: String
    public let labelsName: String
    public let lossName: String
    /// The label value the loss ignores.
    public let ignoreIndex: Int
    /// With `TrainingOptions.batchNormProcesses`: the graph input (a float scalar) the backward pass starts
    /// from, d objective / d loss — this process's share of the global loss; nil otherwise (it is 1).
    public let lossWeightName: String?
    public let gradientGraph: GradientGraph
    public let session: Session

    public init(model: Model, options: TrainingOptions = TrainingOptions()) throws {
        var graph = model.graph
        if options.untieMergedInitializers { graph = try Passes.untieInitializers(graph) }
        guard graph.runtimeInputs.count == 1, let pixel = graph.runtimeInputs.first else {
            throw SegFormerError.invalid("training expects one runtime input (pixel_values); the model has \(graph.runtimeInputs.map(\.name))")
        }
        guard graph.outputs.count >= 1 else { throw SegFormerError.invalid("the model has no outputs") }
        let logits = graph.outputs[0].name
        var forwardModel = model
        forwardModel.graph = graph
        let (trainingGraph, updates) = try TrainingSession.batchNormsOnBatchStatistics(graph, opset: model.opset)
        graph = trainingGraph

        // Float initializers become parameters (0-d scalars are constants the exporter wrote, not
        // module parameters, so they stay constants).
        var names: [String] = []
        var values: [String: Tensor] = [:], buffers: [String: Tensor] = [:]
        for name in graph.initializerOrder {
            guard let t = graph.initializers[name], t.dataType == .float, t.rank > 0 else { continue }
            if updates[name] != nil {
                buffers[name] = t.copy()
                graph.removeInitializer(name)
                graph.inputs.append(ValueInfo(name: name, type: TensorType(.float, known: t.shape)))
                continue
            }
            if options.freezePatterns.contains(where: { name.contains($0) }) { continue }
            names.append(name)
            values[name] = t.copy()
            graph.removeInitializer(name)
            graph.inputs.append(ValueInfo(name: name, type: TensorType(.float, known: t.shape)))
        }
        guard !names.isEmpty else { throw SegFormerError.invalid("no trainable float initializers (all frozen?)") }
        // The parameters are graph inputs now: no pass can fold them, and the decode-head passes
        // merge them with nodes that run each step (the saved model is `forwardModel`, unrewritten).
        if options.optimizingPasses { graph = try OptimizingPipeline.runOnTrainingGraph(graph, opset: model.opset).graph }

        var labels = "labels"
        while graph.inputs.contains(where: { $0.name == labels }) || graph.initializers[labels] != nil
                || graph.nodes.contains(where: { $0.outputs.contains(labels) }) { labels += "_" }
        let (withLoss, loss) = try SegmentationLoss.appendHuggingFaceLoss(
            to: graph, logits: logits, labels: labels, ignoreIndex: options.ignoreIndex, opset: model.opset)
        var withWeight = withLoss, lossWeight: String?
        if options.batchNormProcesses != nil {
            var name = "loss_weight"
            while withLoss.valueInfo[name] != nil || withLoss.inputs.contains(where: { $0.name == name }) { name += "_" }
            withWeight.inputs.append(ValueInfo(name: name, type: TensorType(.float, known: [])))
            lossWeight = name
        }
        var gg = try Autodiff.differentiate(withWeight, opset: model.opset, loss: loss, parameters: names, seed: lossWeight)
        for (buffer, updated) in updates.sorted(by: { $0.key < $1.key }) where buffers[buffer] != nil {
            gg.graph.outputs.append(ValueInfo(name: updated, type: TensorType(.float, known: buffers[buffer]!.shape)))
        }
        self.model = forwardModel
        self.values = values
        self.buffers = buffers
        self.bufferUpdates = updates.filter { buffers[$0.key] != nil }
        self.parameterNames = names
        self.pixelValuesName = pixel.name
        self.labelsName = labels
        self.lossName = loss
        self.ignoreIndex = options.ignoreIndex
        self.lossWeightName = lossWeight
        self.gradientGraph = gg
        // The forward graph went through the training passes above; the gradient graph goes through
        // the gradient-graph passes (`session.compiled.optimization` reports them).
        self.session = try Session(model: Model(graph: gg.graph, opsetImports: model.opsetImports),
                                   options: SessionOptions(threads: options.threads, optimizingPasses: options.optimizingPasses,
                                                           passes: OptimizingPipeline.gradientGraphPasses))
        session.context.random = RandomStream(seed: options.seed)
        session.context.crossProcessSum = options.batchNormProcesses
    }

    /// Rewrites every BatchNormalization in training mode to `BatchNormTraining` with its running mean
    /// and variance outputs named; returns the graph and, per running-statistics initializer, the
    /// output that holds its next value.
    static func batchNormsOnBatchStatistics(_ graph: Graph, opset: Int) throws -> (Graph, [String: String]) {
        var g = graph
        var updates: [String: String] = [:]
        for i in g.nodes.indices {
            var node = g.nodes[i]
            guard node.domain.isEmpty, node.opType == OpType.batchNormalization,
                  try BatchNormMode.isTraining(node, opset: opset), node.inputs.count == 5 else { continue }
            node.opType = OpType.batchNormTraining
            node.domain = trainingDomain
            node.attributes["training_mode"] = nil
            while node.outputs.count < 3 { node.outputs.append("") }
            for k in 1...2 where node.outputs[k].isEmpty { node.outputs[k] = "\(node.outputs[0])/running_statistics_\(k)" }
            for k in 3...4 where g.initializers[node.inputs[k]] != nil { updates[node.inputs[k]] = node.outputs[k - 2] }
            g.nodes[i] = node
        }
        return (g, updates)
    }

    /// Forward + backward on one batch: the loss and d loss / d parameter for every parameter.
    /// Throws, naming the tensor, if the loss or a gradient is not finite.
    /// Leaves the running statistics of training-mode BatchNorms where they are (a step moves them).
    public func lossAndGradients(pixelValues: Tensor, labels: Tensor) throws -> (loss: Float, gradients: [String: Tensor]) {
        let pass = try forwardBackward(pixelValues: pixelValues, labels: labels)
        return (pass.loss, pass.gradients)
    }

    /// Forward + backward, with the running statistics the forward computed (not yet committed).
    /// `lossWeight` scales every gradient (it seeds the backward pass; only with `lossWeightName`);
    /// `observer` hears each gradient as soon as it is final.
    func forwardBackward(pixelValues: Tensor, labels: Tensor, lossWeight: Float = 1, observer: RunObserver? = nil) throws
        -> (loss: Float, gradients: [String: Tensor], buffers: [String: Tensor]) {
        let out = try session.run(feeds(pixelValues: pixelValues, labels: labels, lossWeight: lossWeight), observer: observer)
        let lossTensor = out[lossName]!
        let loss = lossTensor.pointer(Float.self)[0]
        var grads: [String: Tensor] = [:]
        for (p, g) in gradientGraph.gradients { grads[p] = out[g]! }
        return (loss, grads, bufferUpdates.mapValues { out[$0]! })
    }

    /// Makes the running statistics of a forward pass the model's.
    func commit(buffers new: [String: Tensor]) {
        for (name, t) in new { buffers[name] = t.copy() }
    }

    /// The random stream of dropout / drop-path (seed and how many runs drew from it): part of the
    /// state a checkpoint keeps so a resumed run draws the masks the uninterrupted one would.
    public var randomState: RandomStream {
        get { session.context.random }
        set { session.context.random = newValue }
    }

    /// Names of the running statistics (buffers) in name order.
    public var bufferNames: [String] { buffers.keys.sorted() }

    /// Parameters and running statistics: everything a checkpoint keeps of the model.
    public var modelState: [String: Tensor] { parameters.merging(buffers.mapValues { $0.copy() }) { a, _ in a } }

    /// The execution plan of forward + backward for a batch of these shapes (made now if new): its
    /// activation peak and the values live there, for memory reports.
    public func executionPlan(pixelValues: Tensor, labels: Tensor) throws -> ExecutionPlan {
        try session.plan(for: feeds(pixelValues: pixelValues, labels: labels))
    }

    /// What the graph is fed for one batch: parameters, the running statistics of training-mode
    /// BatchNorms, pixels and labels (and the loss's weight where the graph takes one).
    func feeds(pixelValues: Tensor, labels: Tensor, lossWeight: Float = 1) -> [String: Tensor] {
        var feeds = values
        for (name, t) in buffers { feeds[name] = t }
        feeds[pixelValuesName] = pixelValues
        feeds[labelsName] = labels
        if let lossWeightName { feeds[lossWeightName] = Tensor([lossWeight], shape: []) }
        return feeds
    }

    /// A copy of the current parameter values by name.
    public var parameters: [String: Tensor] { values.mapValues { $0.copy() } }

    /// A copy of one parameter's current value.
    public func parameter(_ name: String) -> Tensor? { values[name]?.copy() }

    /// One update of the parameters by `optimizer` from `gradients` (d loss / d parameter) at
    /// `learningRate`: the optimizer works on the session's own tensors, with the session's threads.
    public func update(with optimizer: Optimizer, gradients: [String: Tensor], learningRate: Double) throws {
        try optimizer.update(parameters: values, gradients: gradients, learningRate: learningRate, context: session.context)
    }

    /// Replaces parameter values (e.g. from a checkpoint). Each must name a parameter of this session
    /// and have its type and shape; nothing changes when one does not.
    /// Running statistics (buffers) are accepted too: `modelState` loads back this way.
    public func loadParameters(_ new: [String: Tensor]) throws {
        for (name, value) in new {
            guard let p = values[name] ?? buffers[name], p.dataType == value.dataType, p.shape == value.shape else {
                throw SegFormerError.invalid("parameter '\(name)' \(value.dataType) \(value.shape) does not fit this model")
            }
        }
        for (name, value) in new {
            if values[name] != nil { values[name] = value.copy() } else { buffers[name] = value.copy() }
        }
    }

    /// Stops training at a non-finite loss, naming the (1-based) step and, when given, what was in it.
    public static func requireFinite(loss: Float, step: Int, detail: String = "") throws {
        guard loss.isFinite else { throw SegFormerError.invalid("step \(step): the loss is \(loss)\(detail)") }
    }

    /// Stops training at the first parameter gradient (in parameter order) holding NaN or Inf.
    public func requireFinite(gradients: [String: Tensor], step: Int) throws {
        for name in parameterNames {
            guard let g = gradients[name] else { continue }
            let p = g.pointer(Float.self)
            for i in 0..<g.count where !p[i].isFinite {
                throw SegFormerError.invalid("step \(step): the gradient of '\(name)' holds NaN or Inf")
            }
        }
    }

    /// The model with the current parameter values and running statistics as initializers: the
    /// imported graph, except that merged initializers were untied (each use has its own,
    /// independently trained, tensor); training-mode BatchNorms stay in training form (see
    /// `Passes.inferenceForm` for the graph to deploy).
    public func updatedModel() -> Model {
        var m = model
        for (name, value) in values { m.graph.initializers[name] = value.copy() }
        for (name, value) in buffers { m.graph.initializers[name] = value.copy() }
        return m
    }

    /// `updatedModel()` in inference form (BatchNorm on its running statistics, no dropout or
    /// drop-path; `Passes.inferenceForm`): the graph to evaluate and deploy, which onnxruntime runs.
    public func inferenceModel() throws -> Model {
        var m = updatedModel()
        m.graph = try Passes.inferenceForm(m.graph, opset: m.opset)
        return m
    }

    /// Tensors as a node-less model whose initializers carry the names (the format
    /// of gradient and parameter bundles).
    public static func tensorBundle(_ tensors: [(String, Tensor)], opset: Int) -> Model {
        var g = Graph(name: "tensors")
        for (n, t) in tensors { g.setInitializer(n, t) }
        return Model(graph: g, opsetImports: ["": opset])
    }
}
