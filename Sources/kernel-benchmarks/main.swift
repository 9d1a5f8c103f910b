// Kernel timings at SegFormer-b0 sizes. They are measurements, not pass/fail checks, so they live
// here instead of in the test targets:
//
//   swift run -c release kernel-benchmarks [--list] [FILTER …]
//
// Each FILTER selects the suites whose name contains it (no filter: every suite). Prints one line per
// timing; exits 1 when a kernel throws, 2 on a usage error.
import Foundation

setvbuf(stdout, nil, _IOLBF, 0)   // one line at a time, also into a pipe or file

/// A named group of timings.
struct Suite {
    var name: String
    var summary: String
    var run: () throws -> Void
}

let suites: [Suite] = [
    Suite(name: "elementwise", summary: "hot float32 elementwise kernels, 2M elements", run: elementwiseForward),
    Suite(name: "elementwise-grad", summary: "elementwise forward vs backward at the largest GELU input; Dropout", run: elementwiseGradients),
    Suite(name: "norm-ops", summary: "Softmax, reductions, LayerNorm, Resize, ArgMax forward", run: normOpsForward),
    Suite(name: "norm-grad", summary: "LayerNorm, ReduceMean, BatchNorm, Softmax, Resize, losses (fused HF loss): fwd vs bwd", run: normGradients),
    Suite(name: "conv-matmul", summary: "every b0 Conv and MatMul shape forward, GFLOP/s, raw sgemm ceiling", run: convMatMulForward),
    Suite(name: "gemm-libraries", summary: "sgemm per GEMM library at b0's skinny shapes; fused vs separate epilogue", run: gemmLibraries),
    Suite(name: "gemm-packing", summary: "oneDNN with weights packed once vs dnnl_sgemm: FusedMatMul, ChannelsLastConv, 1-2 threads", run: gemmPacking),
    Suite(name: "nn-grad", summary: "Conv and MatMul forward vs dX/dW/dB at batch 2", run: convMatMulGradients),
    Suite(name: "shape-ops", summary: "Transpose, Concat, Slice forward, GB/s", run: shapeOpsForward),
    Suite(name: "shape-grad", summary: "Concat, Transpose, Slice, Gather forward vs backward", run: shapeGradients),
    Suite(name: "attention", summary: "fused Attention vs MatMul + Softmax + MatMul at b0's shapes", run: attentionForward),
    Suite(name: "conv-tokens", summary: "patch embeddings, spatial reductions: ChannelsLastConv vs Conv + Transposes", run: convTokensForward),
    Suite(name: "token-dwconv", summary: "MixFFN's depthwise 3×3 + GELU: fused channels-last vs Transposes + Conv + Gelu", run: tokenDepthwiseConvForward),
    Suite(name: "layer-norm-fusion", summary: "LayerNorm after FusedMatMul / MixFFN's fc2: separate kernel vs carried by the producer", run: layerNormFusionForward),
    Suite(name: "augmentation", summary: "training augmentation of a 683×512 scene, its stages, the image processor", run: augmentationPipeline),
    Suite(name: "builder", summary: "built b0 vs the imported export (needs ../shared/reference)", run: builtVersusExport),
]

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--list") || arguments.contains("--help") || arguments.contains("-h") {
    print("usage: kernel-benchmarks [--list] [FILTER …]\nsuites:")
    for s in suites { print("  " + s.name.padding(toLength: 18, withPad: " ", startingAt: 0) + s.summary) }
    exit(0)
}
if let option = arguments.first(where: { $0.hasPrefix("-") }) {
    FileHandle.standardError.write(Data("kernel-benchmarks: unknown option \(option) (try --list)\n".utf8))
    exit(2)
}
let selected = arguments.isEmpty ? suites : suites.filter { s in arguments.contains { s.name.contains($0) } }
if selected.isEmpty {
    FileHandle.standardError.write(Data("kernel-benchmarks: no suite matches \(arguments.joined(separator: " ")) (try --list)\n".utf8))
    exit(2)
}
var failed: [String] = []
for suite in selected {
    print("== \(suite.name): \(suite.summary)")
    do {
        try suite.run()
    } catch {
        FileHandle.standardError.write(Data("kernel-benchmarks: \(suite.name) failed: \(error)\n".utf8))
        failed.append(suite.name)
    }
}
if !failed.isEmpty {
    FileHandle.standardError.write(Data("kernel-benchmarks: failed suites: \(failed.joined(separator: ", "))\n".utf8))
    exit(1)
}
