import GraphIR
import SegmentationData

extension TrainingSession {
    /// The training step of one process in a data-parallel job: the same update as `step` would make on
    /// the whole global batch (all processes' slices together) in one process.
    ///
    /// HF's loss is the mean over the labelled pixels of the batch, so each process's mean-loss gradient
    /// is weighted by its share of the *global* labelled-pixel count (local / global) before the gradients
    /// are summed over the processes: Σ_r (n_r / n) · ∇mean_r = ∇(Σ pixels / n), the single-process
    /// gradient. (PyTorch DDP averages the per-process means instead, Σ_r ∇mean_r / N, which differs
    /// whenever the processes' slices hold different numbers of ignored pixels.) The logged loss is the
    /// global one, Σ_r (n_r / n) · loss_r. A process whose slice holds no labelled pixel contributes zero.
    ///
    /// `next` gives this process's slice of each global batch (nil, an epoch boundary, is skipped; it comes
    /// at the same step on every process). With `microBatches` > 1 each micro-batch is normalised by its
    /// own global count and the micro-batches are averaged, as `step` does.
    public func dataParallelStep(_ number: Int, group: ProcessGroup, optimizer: Optimizer, learningRate: Double,
                                 microBatches: Int = 1, ignoreIndex: Int,
                                 next: () throws -> SegmentationBatch?) throws -> TrainingStepResult {
        precondition(microBatches >= 1, "a step needs at least one micro-batch")
        var sums: [String: Tensor] = [:]
        var weightedLosses: [Double] = []
        var images = 0
        while weightedLosses.count < microBatches {
            guard let batch = try next() else { continue }
            // The global labelled-pixel and image counts come first (small), so every process knows its weight.
            let labelled = Int64(TrainingSession.labelledPixels(batch.labels, ignoreIndex: ignoreIndex))
            var counts: [Int64] = [labelled, Int64(batch.pixelValues.shape[0])]
            try group.allReduce(&counts, .sum)
            images += Int(counts[1])
            guard counts[0] > 0 else {
                // Single-process HF takes the mean over no pixel: NaN, which `step` reports as this.
                try TrainingSession.requireFinite(loss: .nan, step: number, detail: " (every pixel of the global batch is ignored)")
                continue
            }
            var weighted = 0.0
            if labelled > 0 {
                let (loss, grads, runningStatistics) = try forwardBackward(pixelValues: batch.pixelValues, labels: batch.labels)
                try TrainingSession.requireFinite(loss: loss, step: number,
                                                  detail: batch.indices.isEmpty ? "" : " (samples \(batch.indices))")
                try requireFinite(gradients: grads, step: number)
                // Each process's BatchNorms move on its own slice (DDP's default, without --sync-batchnorm).
                commit(buffers: runningStatistics)
                let share = Double(labelled) / Double(counts[0])
                weighted = Double(loss) * share
                TrainingSession.accumulate(&sums, grads, scale: Float(share / Double(microBatches)))
            }
            weightedLosses.append(weighted)
        }
        // Parameters this process computed no gradient for (no labelled pixel) contribute zeros.
        for name in parameterNames where sums[name] == nil {
            guard let shape = parameter(name)?.shape else { continue }
            sums[name] = Tensor(zeros: .float, shape: shape)
        }
        let buffers = parameterNames.compactMap { sums[$0] }.map {
            UnsafeMutableBufferPointer(start: $0.pointer(Float.self), count: $0.count)
        }
        try group.allReduceSum(buffers)
        try group.allReduceSum(&weightedLosses)
        try update(with: optimizer, gradients: sums, learningRate: learningRate)
        return TrainingStepResult(losses: weightedLosses.map { Float($0) }, images: images, gradients: sums)
    }
}
