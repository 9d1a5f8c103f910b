import GraphIR
import SegmentationData

/// What one training step did.
public struct TrainingStepResult {
    /// The loss of each micro-batch, computed before the update (skipped batches have none).
    public var losses: [Float]
    /// The sample indices of each batch skipped because every label in it was ignored (with
    /// `skipUnlabelledBatches`); such a batch contributes zero loss and gradient.
    public var skippedBatches: [[Int]] = []
    /// Images in all micro-batches.
    public var images: Int
    /// The gradients the optimizer applied (averaged over the micro-batches). They stay valid until
    /// the session runs again.
    public var gradients: [String: Tensor]

    /// The mean of `losses`.
    public var meanLoss: Double { losses.reduce(0.0) { $0 + Double($1) } / Double(max(1, losses.count)) }
}

extension TrainingSession {
    /// The training step — the one the trainer, `segformer step` and `segformer bench --train` take:
    /// forward + backward on `microBatches` batches from `next` (nil, an epoch boundary, is skipped),
    /// stopping at a non-finite loss or gradient with an error naming step `number` (1-based); the
    /// gradients averaged over the micro-batches (gradient accumulation); then one update by
    /// `optimizer` at `learningRate`. Running statistics of training-mode BatchNorms move with each
    /// micro-batch's forward pass, as PyTorch's do.
    ///
    /// A batch whose labels are all `ignoreIndex` gives loss 0 and zero gradients (the fused HF loss), so
    /// it is run like any other; with `skipUnlabelledBatches` (the trainer) it is not run at all: it counts
    /// as a micro-batch contributing zero loss and gradient and is listed in `skippedBatches`; when every
    /// micro-batch is skipped, no update is applied (AdamW would otherwise still move the parameters).
    public func step(_ number: Int, optimizer: Optimizer, learningRate: Double, microBatches: Int = 1,
                     skipUnlabelledBatches: Bool = false,
                     next: () throws -> SegmentationBatch?) throws -> TrainingStepResult {
        precondition(microBatches >= 1, "a step needs at least one micro-batch")
        var result = TrainingStepResult(losses: [], images: 0, gradients: [:])
        while result.losses.count + result.skippedBatches.count < microBatches {
            guard let batch = try next() else { continue }
            if skipUnlabelledBatches && TrainingSession.labelledPixels(batch.labels, ignoreIndex: ignoreIndex) == 0 {
                result.skippedBatches.append(batch.indices)
                continue
            }
            let (loss, grads, runningStatistics) = try forwardBackward(pixelValues: batch.pixelValues, labels: batch.labels)
            try TrainingSession.requireFinite(loss: loss, step: number,
                                              detail: batch.indices.isEmpty ? "" : " (samples \(batch.indices))")
            try requireFinite(gradients: grads, step: number)
            // Each forward pass in train mode moves the BatchNorm running statistics (as in PyTorch).
            commit(buffers: runningStatistics)
            // One batch: its gradients as they are (scaling by 1 would change no bit, only cost a copy).
            if microBatches == 1 { result.gradients = grads } else {
                TrainingSession.accumulate(&result.gradients, grads, scale: 1 / Float(microBatches))
            }
            result.losses.append(loss)
            result.images += batch.pixelValues.shape[0]
        }
        if !result.losses.isEmpty {
            try update(with: optimizer, gradients: result.gradients, learningRate: learningRate)
        }
        return result
    }

    /// The labels that are not `ignoreIndex` (counted before a step runs, so an unlabelled batch can be
    /// skipped and a data-parallel step can weight each process's share).
    static func labelledPixels(_ labels: Tensor, ignoreIndex: Int) -> Int {
        guard labels.dataType == .int64 else { return labels.count }   // the session reports a wrong type itself
        let p = labels.pointer(Int64.self), ignored = Int64(ignoreIndex)
        var n = 0
        for i in 0..<labels.count where p[i] != ignored { n += 1 }
        return n
    }

    /// The step on one batch.
    public func step(_ number: Int, batch: SegmentationBatch, optimizer: Optimizer, learningRate: Double) throws -> TrainingStepResult {
        try step(number, optimizer: optimizer, learningRate: learningRate) { batch }
    }

    /// sum += grads · scale, per parameter (the first call allocates the sums).
    static func accumulate(_ sum: inout [String: Tensor], _ grads: [String: Tensor], scale: Float) {
        for (name, g) in grads {
            let s = sum[name] ?? Tensor(uninitialized: .float, shape: g.shape)
            scaledAdd(g, scale: scale, into: s, overwrite: sum[name] == nil)
            sum[name] = s
        }
    }

    /// sum += g · scale, or sum = g · scale with `overwrite` (a new sum): the one place gradients are weighted.
    static func scaledAdd(_ g: Tensor, scale: Float, into sum: Tensor, overwrite: Bool) {
        let src = g.pointer(Float.self), dst = sum.pointer(Float.self)
        if overwrite {
            for i in 0..<g.count { dst[i] = src[i] * scale }
        } else {
            for i in 0..<g.count { dst[i] += src[i] * scale }
        }
    }
}
