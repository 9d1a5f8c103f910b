import Foundation
import GraphIR

/// Where a `SegmentationDataLoader` stands: the epoch, the position in that epoch's sample order (samples
/// consumed, skipped ones included) and the RNG state at the start of the epoch (which decides the
/// epoch's order and every sample's augmentation). Save it with a checkpoint; `restore` resumes exactly.
public struct DataLoaderState: Codable, Equatable, Sendable {
    public var epoch: Int
    public var position: Int
    public var rngState: UInt64

    // A public memberwise init, shaped like SegmentationSample's (Swift makes memberwise inits internal).
    public init(epoch: Int, position: Int, rngState: UInt64) {
        self.epoch = epoch
        self.position = position
        self.rngState = rngState
    }

    /// The state as words, for a checkpoint's `pipelineState` (`[epoch, position, rngState]`).
    public var words: [UInt64] { [UInt64(epoch), UInt64(position), rngState] }

    public init(words: [UInt64]) throws {
        guard words.count == 3, words[0] <= UInt64(Int32.max), words[1] <= UInt64(Int32.max) else {
            throw SegFormerError.invalid("data loader state: expected [epoch, position, rng state], got \(words)")
        }
        self.init(epoch: Int(words[0]), position: Int(words[1]), rngState: words[2])
    }
}

/// One collated batch.
public struct SegmentationBatch: @unchecked Sendable {
    /// float32 [B, 3, H, W].
    public var pixelValues: Tensor
    /// int64 [B, H, W] (255 = ignore).
    public var labels: Tensor
    /// Dataset indices of the samples, in batch order.
    public var indices: [Int]
    public var epoch: Int

    public init(pixelValues: Tensor, labels: Tensor, indices: [Int] = [], epoch: Int = 0) {
        self.pixelValues = pixelValues
        self.labels = labels
        self.indices = indices
        self.epoch = epoch
    }
}

/// Turns a dataset into batches: load → (reduce labels) → augmentation → `SegformerImageProcessor` →
/// collate, with the next `prefetchDepth` batches prepared on a background thread of the lowest priority
/// while the current one trains (`BackgroundThread`: the step keeps its cores).
///
/// Determinism: an epoch's order and the augmentation of each sample depend only on the epoch's RNG
/// state and the sample's position in the order (each position has its own RNG stream), never on timing
/// or prefetching. Epoch e's RNG state is the state after epoch e − 1 drew its permutation and its
/// augmentation seed, so the whole stream follows from `seed`.
///
/// `reduce_labels` (the processor's `doReduceLabels`) is applied to the raw mask *before* the
/// augmentation, as MMSegmentation's `reduce_zero_label`, so `cat_max_ratio` ignores the "other" class;
/// the processor then runs with label reduction off. Since the reduction maps 255 to 255 and commutes
/// with crop, flip and nearest resize, the labels are otherwise identical to reducing afterwards.
///
/// When an augmentation is given and its crop size equals the processor's size, the processor's resize
/// is skipped (it would be the identity); set `processorResize` to force it on or off.
public final class SegmentationDataLoader: @unchecked Sendable {
    public let dataset: SegmentationDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let augmentation: SegmentationAugmentation?
    public let processor: SegformerImageProcessor
    public let prefetch: Bool
    /// How many batches are prepared ahead when `prefetch` is on (each holds one batch's tensors). More
    /// than one lets the idle moments of several steps make a batch that takes longer than one step's.
    public let prefetchDepth: Int
    /// In a data-parallel job: this process's part of every batch (see `DataShard`); nil: the whole batch.
    public let shard: DataShard?

    public private(set) var state: DataLoaderState

    private struct EpochPlan { let rngState: UInt64; let order: [Int]; let augmentSeed: UInt64; let nextRNGState: UInt64 }
    private var planCache: EpochPlan?
    private let planLock = NSLock()

    /// A batch being prepared ahead. The first of a chain knows its state; each later one starts where
    /// its predecessor ended, which its job reads once the predecessor's job (run before it on the same
    /// thread) is done. `state` and `result` are written by the job before `done` is signalled.
    private final class Pending: @unchecked Sendable {
        var state: DataLoaderState?
        let chain: Chain
        let done = DispatchSemaphore(value: 0)
        var result: Result<(SegmentationBatch?, DataLoaderState), Error>?
        init(state: DataLoaderState?, chain: Chain) { self.state = state; self.chain = chain }
    }
    /// Batches queued one after another; once abandoned, its jobs not yet started skip their work.
    private final class Chain: @unchecked Sendable {
        private let lock = NSLock()
        private var isAbandoned = false
        var abandoned: Bool { lock.lock(); defer { lock.unlock() }; return isAbandoned }
        func abandon() { lock.lock(); isAbandoned = true; lock.unlock() }
    }
    /// The batches ahead, in order (only the caller's thread touches the array).
    private var pending: [Pending] = []
    private let prefetcher = BackgroundThread(name: "segformer.dataloader.prefetch")

    /// - Parameters:
    ///   - processorResize: nil = automatic (off when the augmentation's crop size equals the processor size).
    ///   - shard: deliver only this process's slice of each batch of `batchSize` (the global batch); needs
    ///     `dropLast`, so that every batch is whole and every slice holds `batchSize / shard.count` samples.
    public init(dataset: SegmentationDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
                augmentation: SegmentationAugmentation? = nil, processor: SegformerImageProcessor = SegformerImageProcessor(),
                processorResize: Bool? = nil, seed: UInt64 = 0, prefetch: Bool = true, prefetchDepth: Int = 2,
                shard: DataShard? = nil) throws {
        guard batchSize > 0 else { throw SegFormerError.invalid("data loader: batch size \(batchSize) must be positive") }
        guard (1...16).contains(prefetchDepth) else {
            throw SegFormerError.invalid("data loader: prefetch depth \(prefetchDepth) must be in 1…16")
        }
        if let shard {
            guard shard.count >= 1, shard.index >= 0, shard.index < shard.count, batchSize % shard.count == 0, dropLast else {
                throw SegFormerError.invalid("data loader: shard \(shard.index) of \(shard.count) needs drop_last and a batch size (\(batchSize)) divisible by \(shard.count)")
            }
        }
        guard dataset.count > 0 else { throw SegFormerError.invalid("data loader: the dataset has no samples") }
        if dropLast, dataset.count < batchSize {
            throw SegFormerError.invalid("data loader: \(dataset.count) samples is fewer than one batch of \(batchSize) with drop_last")
        }
        try augmentation?.validate()
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.augmentation = augmentation
        var p = processor
        if let resize = processorResize {
            p.doResize = resize
        } else if let a = augmentation, a.cropHeight == p.height, a.cropWidth == p.width {
            p.doResize = false
        }
        self.reduceLabels = p.doReduceLabels
        p.doReduceLabels = false
        self.processor = p
        self.prefetch = prefetch
        self.prefetchDepth = prefetchDepth
        self.shard = shard
        self.state = DataLoaderState(epoch: 0, position: 0, rngState: seed)
    }

    private let reduceLabels: Bool

    deinit { prefetcher.stop() }

    /// Batches in one epoch (assuming no sample is skipped).
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }


    /// Resumes from a saved state (any prefetched batch is discarded).
    public func restore(_ newState: DataLoaderState) throws {
        guard newState.epoch >= 0, newState.position >= 0, newState.position <= dataset.count else {
            throw SegFormerError.invalid("data loader: state \(newState) does not fit a dataset of \(dataset.count) samples")
        }
        abandonPending()
        state = newState
    }

    /// Drops the batches ahead without waiting for them (a job already running finishes unread).
    private func abandonPending() {
        for p in pending { p.chain.abandon() }
        pending = []
    }

    /// The next batch, or nil at the end of an epoch (the state then moves to the next epoch, so the
    /// following call starts it).
    public func next() throws -> SegmentationBatch? {
        let current = state
        var prepared: Result<(SegmentationBatch?, DataLoaderState), Error>?
        if !pending.isEmpty {
            // The prefetch thread runs only on cores nothing else wants: on a busy machine the batch
            // may not be ready. Then it is made here, at the caller's priority, while the step's
            // threads wait for it anyway (as without prefetching), and the chain ahead is dropped.
            let p = pending.removeFirst()
            if p.done.wait(timeout: .now()) == .success, p.state == current { prepared = p.result } else { abandonPending() }
        }
        let (batch, nextState) = try (prepared ?? Result { try self.makeBatch(at: current) }).get()
        state = nextState
        if prefetch { fillPrefetch(from: nextState) }
        return batch
    }

    /// Queues batches until `prefetchDepth` are ahead; the first starts at `s` when none is queued.
    private func fillPrefetch(from s: DataLoaderState) {
        let chain = pending.last?.chain ?? Chain()
        while pending.count < prefetchDepth {
            let previous = pending.last
            let p = Pending(state: previous == nil ? s : nil, chain: chain)
            prefetcher.async { [self] in
                if chain.abandoned { p.done.signal(); return }
                if let previous {
                    // After a failed batch the chain stops; `next()` then makes the batch itself.
                    guard case .success(let made)? = previous.result else { p.done.signal(); return }
                    p.state = made.1
                }
                p.result = Result { try self.makeBatch(at: p.state!) }
                p.done.signal()
            }
            pending.append(p)
        }
    }

    private func plan(for s: DataLoaderState) -> EpochPlan {
        planLock.lock(); defer { planLock.unlock() }
        if let c = planCache, c.rngState == s.rngState { return c }
        var rng = SplitMix64(seed: s.rngState)
        var order = Array(0..<dataset.count)
        if shuffle { rng.shuffle(&order) }
        let augmentSeed = rng.next()
        let p = EpochPlan(rngState: s.rngState, order: order, augmentSeed: augmentSeed, nextRNGState: rng.state)
        planCache = p
        return p
    }

    /// A pure function of the state: the batch there and the state after it.
    private func makeBatch(at s: DataLoaderState) throws -> (SegmentationBatch?, DataLoaderState) {
        let plan = plan(for: s)
        let n = plan.order.count
        let endOfEpoch = DataLoaderState(epoch: s.epoch + 1, position: 0, rngState: plan.nextRNGState)
        var position = s.position
        var images: [Image] = [], labels: [Image] = [], indices: [Int] = []
        let mine = shard.map { $0.slots(batchSize: batchSize) } ?? 0..<batchSize
        var taken = 0   // samples in the (global) batch so far, this process's and the others'
        while taken < batchSize, position < n {
            let index = plan.order[position]
            var rng = SplitMix64.stream(seed: plan.augmentSeed, index: UInt64(position))
            position += 1
            // Another process's sample: only whether it is skipped matters here (it moves the slots after
            // it), so it is loaded only when bad samples are skipped; its owner augments it.
            if !mine.contains(taken) {
                if dataset.skipBadSamples, try dataset.loadOrSkip(index) == nil { continue }
                taken += 1
                continue
            }
            guard var (image, label) = try dataset.loadOrSkip(index) else { continue }
            do {
                if reduceLabels { SegmentationDataLoader.reduce(&label) }
                if let a = augmentation { (image, label) = try a.apply(image: image, label: label, rng: &rng) }
            } catch let e as SegFormerError {
                throw e.prefixed("sample \(dataset.samples[index].imagePath)")
            }
            images.append(image); labels.append(label); indices.append(index)
            taken += 1
        }
        if taken == 0 || (dropLast && taken < batchSize) {
            // A whole epoch without one batch would repeat forever: every sample bad (and skipped).
            if s.position == 0 {
                throw SegFormerError.invalid("data loader: \(n - taken) of the \(n) samples are bad (skipped), "
                    + "leaving \(taken == 0 ? "no sample" : "fewer than one batch of \(batchSize)") to train on")
            }
            return (nil, endOfEpoch)
        }
        let (pixels, labs) = try processor.preprocess(images: images, segmentationMaps: labels)
        let batch = SegmentationBatch(pixelValues: pixels, labels: labs!, indices: indices, epoch: s.epoch)
        // A full batch that ends exactly at the epoch's end still leaves position = n; the next call gives nil.
        return (batch, DataLoaderState(epoch: s.epoch, position: position, rngState: s.rngState))
    }

    /// HF `do_reduce_labels`: 0 → 255, k → k − 1, 255 stays.
    static func reduce(_ label: inout Image) {
        label.pixels.withUnsafeMutableBufferPointer { p in
            for i in p.indices {
                let v = p[i]
                p[i] = v == 0 || v == 255 ? 255 : v - 1
            }
        }
    }
}

/// One process's part of every batch in a data-parallel job: process `index` of `count` takes the
/// `index`-th of `count` equal consecutive slices of each global batch, so the processes together see
/// exactly the batch a single process would (same order, same augmentation draws: those depend only on
/// the seed and the sample's position, never on who computes them).
public struct DataShard: Sendable, Equatable {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) { self.index = index; self.count = count }

    /// This shard's positions in a global batch of `batchSize`.
    func slots(batchSize: Int) -> Range<Int> {
        let per = batchSize / count
        return index * per ..< (index + 1) * per
    }
}
