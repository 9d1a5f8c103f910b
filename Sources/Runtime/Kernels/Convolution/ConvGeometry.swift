import GraphIR

/// Spatial window attributes shared by Conv and the pools.
struct WindowAttributes {
    var autoPad: String
    var kernelShape: [Int]?
    var strides: [Int]?
    var dilations: [Int]?
    var pads: [Int]?

    init(_ node: Node) throws {
        autoPad = try node.string("auto_pad", default: "NOTSET")
        guard ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(autoPad) else {
            throw SegFormerError.invalid("\(node.label): unknown auto_pad '\(autoPad)'")
        }
        kernelShape = try node.ints("kernel_shape")
        strides = try node.ints("strides")
        dilations = try node.ints("dilations")
        pads = try node.ints("pads")
        if let s = strides, s.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): strides must be ≥ 1, got \(s)") }
        if let d = dilations, d.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): dilations must be ≥ 1, got \(d)") }
        if let p = pads, p.contains(where: { $0 < 0 }) { throw SegFormerError.invalid("\(node.label): pads must be ≥ 0, got \(p)") }
        if let k = kernelShape, k.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): kernel_shape must be ≥ 1, got \(k)") }
    }

    /// Strides, dilations and pads for `rank` spatial dims, defaults filled in, lengths checked.
    func resolved(rank: Int, _ label: String) throws -> (strides: [Int], dilations: [Int], pads: [Int]) {
        let s = strides ?? [Int](repeating: 1, count: rank)
        let d = dilations ?? [Int](repeating: 1, count: rank)
        let p = pads ?? [Int](repeating: 0, count: 2 * rank)
        guard s.count == rank, d.count == rank, p.count == 2 * rank else {
            throw SegFormerError.invalid("\(label): for \(rank) spatial dims expected \(rank) strides, \(rank) dilations and \(2 * rank) pads, got strides \(s), dilations \(d), pads \(p)")
        }
        return (s, d, p)
    }
}

/// The concrete geometry of a sliding-window op over `rank` spatial dimensions.
struct WindowGeometry {
    var inputSpatial: Int { input.reduce(1, *) }
    var outputSpatial: Int { output.reduce(1, *) }
    var taps: Int { kernel.reduce(1, *) }
    /// A 1×…×1 kernel with unit strides and no padding: the conv is a plain GEMM over positions.
    var isPointwise: Bool {
        taps == 1 && strides.allSatisfy { $0 == 1 } && padBegin.allSatisfy { $0 == 0 } && padEnd.allSatisfy { $0 == 0 }
    }
    var input: [Int]
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var padBegin: [Int]
    var padEnd: [Int]
    var output: [Int]

    var rank: Int { input.count }

    init(input: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int], padEnd: [Int], output: [Int]) {
        self.input = input; self.kernel = kernel; self.strides = strides; self.dilations = dilations
        self.padBegin = padBegin; self.padEnd = padEnd; self.output = output
    }

    /// Resolves pads (auto_pad) and output sizes. `ceilMode` is the pools' ceil_mode (a last window
    /// that would start inside the end padding is dropped, as PyTorch and the ONNX reference do).
    init(input: [Int], kernel: [Int], attributes a: WindowAttributes, ceilMode: Bool = false, _ label: String) throws {
        let rank = input.count
        let (s, d, p) = try a.resolved(rank: rank, label)
        guard kernel.count == rank else {
            throw SegFormerError.invalid("\(label): kernel has \(kernel.count) spatial dims, input has \(rank) (\(input))")
        }
        self.input = input; self.kernel = kernel; strides = s; dilations = d
        padBegin = []; padEnd = []; output = []
        for i in 0..<rank {
            let dk = (kernel[i] - 1) * d[i] + 1
            var pb = p[i], pe = p[i + rank], out: Int
            switch a.autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                out = (input[i] + s[i] - 1) / s[i]
                let total = max(0, (out - 1) * s[i] + dk - input[i])
                pb = a.autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                pe = total - pb
            case "VALID":
                pb = 0; pe = 0
                out = input[i] >= dk ? (input[i] - dk) / s[i] + 1 : 0
            default:
                let span = input[i] + pb + pe - dk
                if span < 0 { out = 0 } else if ceilMode {
                    out = (span + s[i] - 1) / s[i] + 1
                    if (out - 1) * s[i] >= input[i] + pb { out -= 1 }
                } else { out = span / s[i] + 1 }
            }
            guard out >= 1 else {
                throw SegFormerError.invalid("\(label): input spatial size \(input) with kernel \(kernel), strides \(s), dilations \(d), pads \(p) (auto_pad \(a.autoPad)) gives an empty output")
            }
            padBegin.append(pb); padEnd.append(pe); output.append(out)
        }
        var total = 1
        for v in output {
            let (r, o) = total.multipliedReportingOverflow(by: v)
            guard !o, r < (1 << 34) else {
                throw SegFormerError.invalid("\(label): output spatial size \(output) is absurd (pads \(p))")
            }
            total = r
        }
    }

    /// The 1-D geometry seen as 2-D with a height-1 leading dimension.
    var lifted2D: WindowGeometry {
        var g = self
        g.input = [1] + input; g.kernel = [1] + kernel; g.strides = [1] + strides; g.dilations = [1] + dilations
        g.padBegin = [0] + padBegin; g.padEnd = [0] + padEnd; g.output = [1] + output
        return g
    }

    /// The same computation symbolically (for shape inference); nil entries of `kernel` are unknown.
    static func symbolicOutput(input: [Dim], kernel: [Int?], attributes a: WindowAttributes, ceilMode: Bool = false,
                               _ label: String) throws -> [Dim] {
        let rank = input.count
        guard kernel.count == rank else {
            throw SegFormerError.invalid("\(label): kernel has \(kernel.count) spatial dims, input has \(rank)")
        }
        let (s, d, p) = try a.resolved(rank: rank, label)
        var out: [Dim] = []
        for i in 0..<rank {
            guard let k = kernel[i] else { out.append(.symbol("\(label)_out\(i)")); return out + (i + 1..<rank).map { .symbol("\(label)_out\($0)") } }
            if let v = input[i].value {
                let g = try WindowGeometry(input: [v], kernel: [k],
                                           attributes: a.slice(i, rank: rank), ceilMode: ceilMode, label)
                out.append(.known(g.output[0]))
                continue
            }
            let name = input[i].description
            let dk = (k - 1) * d[i] + 1
            switch a.autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                out.append(s[i] == 1 ? input[i] : .symbol("ceil(\(name)/\(s[i]))"))
            case "VALID":
                out.append(s[i] == 1 && dk == 1 ? input[i] : .symbol("ceil((\(name)-\(dk - 1))/\(s[i]))"))
            default:
                let extra = p[i] + p[i + rank] - dk
                if s[i] == 1 && extra == -1 { out.append(input[i]); continue }
                let expr = extra == 0 ? name : extra > 0 ? "\(name)+\(extra)" : "\(name)-\(-extra)"
                out.append(.symbol("\(ceilMode ? "ceil" : "floor")((\(expr))/\(s[i]))+1"))
            }
        }
        return out
    }
}

extension WindowAttributes {
    /// The attributes of spatial dimension `i` alone (for computing one dimension at a time).
    func slice(_ i: Int, rank: Int) -> WindowAttributes {
        var a = self
        a.kernelShape = kernelShape.map { [$0[i]] }
        a.strides = strides.map { [$0[i]] }
        a.dilations = dilations.map { [$0[i]] }
        a.pads = pads.map { [$0[i], $0[i + rank]] }
        return a
    }
}

/// How the im2col paths cut a conv's output positions into tiles. A kernel takes its tiling when it
/// is built (`ConvTiling.current` unless given); tests bind a narrow one with
/// `ConvTiling.$current.withValue(...)` to exercise the tile seams on small shapes. The binding is
/// scoped to the calling task, so it never leaks into other tests or sessions.
struct ConvTiling: Sendable {
    /// Elements of the forward im2col buffer per tile: 1 MB of float32, so a tile stays in L2 between
    /// im2col and its GEMM (measured no slower than whole-image columns on SegFormer's shapes).
    var columnBudget = 1 << 18
    /// Narrowest tile of output positions (narrower tiles make the GEMM inefficient).
    var minimumTile = 256
    /// dW's im2col budget as a multiple of `columnBudget`: its GEMM reduces over the tile (K = tile),
    /// so it takes longer tiles than the forward.
    var gradWeightColumnFactor = 16

    @TaskLocal static var current = ConvTiling()
}

/// Conv, ConvTranspose and their gradients (see ConvSchemas.swift for the paths each takes).
enum Convolution {
    /// Validated sizes of one Conv call.
    struct ConvShape {
        var n: Int, c: Int, m: Int, group: Int
        var geometry: WindowGeometry
        /// Where the forward writes the output channels (the backward kernels read channels first).
        var layout: ConvOutputLayout = .channelsFirst
        var cPerGroup: Int { c / group }
        var mPerGroup: Int { m / group }
        /// The same convolution with a 1-D geometry seen as 2-D (height 1), which the kernels handle.
        var lifted: ConvShape {
            var s = self
            if s.geometry.rank == 1 { s.geometry = s.geometry.lifted2D }
            return s
        }
    }

    /// Output positions `o` in 0..<count whose input coordinate `o·stride + base` lies in 0..<size.
    @inline(__always)
    static func validRange(base: Int, stride: Int, size: Int, count: Int) -> (Int, Int) {
        let lo = base >= 0 ? 0 : (-base + stride - 1) / stride
        let last = size - 1 - base
        let hi = last < 0 ? 0 : min(count, last / stride + 1)
        return (min(lo, hi), hi)
    }

    /// A column buffer (im2col / col2im) of `count` elements of T.
    static func columnBuffer<T: BinaryFloatingPoint>(_: T.Type, count: Int) -> Tensor {
        Tensor(uninitialized: T.self == Double.self ? .double : .float, shape: [count])
    }
}

extension Convolution.ConvShape {
    /// Output positions per column tile for `rows` column rows within `budget` elements. 2-D convs
    /// cut each image into tiles; the generic N-D im2col works on whole images (`what` names the
    /// buffer when an image's columns are too large for it).
    func columnTile(rows: Int, budget: Int, minimumTile: Int, _ what: String) throws -> Int {
        let positions = geometry.outputSpatial
        if geometry.rank == 2 {
            return rows * positions <= budget ? positions : min(positions, max(minimumTile, budget / rows))
        }
        guard rows.multipliedReportingOverflow(by: positions).partialValue < (1 << 31) else {
            throw SegFormerError.unsupported("\(what) of \(rows)×\(positions) is too large for the generic N-D path")
        }
        return positions
    }

    /// The loop the GEMM paths of the forward, dX and dW share: `body(image, group, p0, p1)` for every
    /// image, every group and every tile p0..<p1 of at most `tile` output positions, in that order.
    @inline(__always)
    func forEachTile(_ tile: Int, _ body: (_ image: Int, _ group: Int, _ p0: Int, _ p1: Int) throws -> Void) rethrows {
        let positions = geometry.outputSpatial
        for img in 0..<n {
            for grp in 0..<group {
                var p0 = 0
                while p0 < positions {
                    let p1 = min(positions, p0 + tile)
                    try body(img, grp, p0, p1)
                    p0 = p1
                }
            }
        }
    }
}
