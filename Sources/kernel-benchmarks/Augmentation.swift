import GraphIR
import SegmentationData

/// The training data pipeline's CPU cost per sample, 1 thread: the SegFormer ADE20K augmentation
/// (random resize of a 2048×512 scale, 512² crop, flip, colour jitter) of a 683×512 scene (ADE20K's
/// usual size), its stages, and the image processor's normalisation of a batch of 2.
func augmentationPipeline() throws {
    let timer = Timer(.threadCPU, threads: 1, repeats: 5, nameWidth: 56)
    let scene = SyntheticScenes.render(width: 683, height: 512, seed: 7, training: true, index: 0)
    let recipe = SegmentationAugmentation(cropSize: 512)
    // Eight seeds cover small and large random resizes; the time is for all eight.
    try timer.time("augmentation, 8 samples (seeds 0-7)") {
        for seed in 0..<8 as Range<UInt64> {
            var rng = SplitMix64(seed: seed)
            _ = try recipe.apply(image: scene.image, label: scene.labels, rng: &rng)
        }
    }
    var noJitter = recipe
    noJitter.colorJitter = nil
    try timer.time("  the same without colour jitter") {
        for seed in 0..<8 as Range<UInt64> {
            var rng = SplitMix64(seed: seed)
            _ = try noJitter.apply(image: scene.image, label: scene.labels, rng: &rng)
        }
    }
    var crop = try scene.image.resized(width: 512, height: 512)
    try timer.time("  colour jitter of a 512² crop, 8 draws") {
        for seed in 0..<8 as Range<UInt64> {
            var rng = SplitMix64(seed: seed)
            try ColorJitter().apply(&crop, rng: &rng)
        }
    }
    try timer.time("  bilinear resize 683×512 → 1365×1024 (ratio 2)") {
        _ = try scene.image.resized(width: 1365, height: 1024)
    }
    let processor = SegformerImageProcessor(doResize: false)
    try timer.time("image processor: normalise 2 × 512² (no resize)") {
        _ = try processor.preprocess(images: [crop, crop], segmentationMaps: [scene.labels.resized(width: 512, height: 512, filter: .nearest), scene.labels.resized(width: 512, height: 512, filter: .nearest)])
    }
}
