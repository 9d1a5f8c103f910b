/// Bands of whole output rows over a batch of images, about `pixels` output pixels each: a kernel
/// that runs a single-threaded GEMM per band (the fused projections) splits the bands over the
/// threads. The cut depends on the shape alone, not on the thread count, so the bits do not either.
struct RowBands {
    let rowsPerBand: Int
    let perImage: Int
    let height: Int
    let count: Int

    init(images: Int, height: Int, width: Int, pixels: Int) {
        rowsPerBand = max(1, min(height, pixels / max(width, 1)))
        perImage = (height + rowsPerBand - 1) / rowsPerBand
        self.height = height
        count = images * perImage
    }

    /// Band `i`: its image and its output rows.
    func band(_ i: Int) -> (image: Int, rows: Range<Int>) {
        let first = (i % perImage) * rowsPerBand
        return (i / perImage, first..<min(height, first + rowsPerBand))
    }
}
