/// The op types that code outside an op's own schema names: graph builders (the SegFormer builder, the
/// loss, autodiff), gradient rules that emit other ops, and graph passes that match patterns. One
/// spelling each, checked by the compiler; an op that only its own schema file names keeps its name
/// there. `scripts/check-op-names.py` keeps it that way.
public enum OpType {
    public static let add = "Add"
    /// Fused domain: softmax(scale · Q·Kᵀ) · V as one tiled kernel (written by the fuse-attention pass).
    public static let attention = "Attention"
    public static let batchNormalization = "BatchNormalization"
    /// Training domain: BatchNormalization with PyTorch's running-statistics rule (training sessions).
    public static let batchNormTraining = "BatchNormTraining"
    public static let cast = "Cast"
    /// Fused domain: Conv (same inputs and attributes) writing its output channels last, [N, spatial…, M]
    /// — written by the fuse-conv-to-tokens pass where the encoder turns a conv's output into tokens.
    public static let channelsLastConv = "ChannelsLastConv"
    public static let concat = "Concat"
    public static let constantOfShape = "ConstantOfShape"
    public static let conv = "Conv"
    public static let div = "Div"
    public static let dropout = "Dropout"
    public static let erf = "Erf"
    public static let floor = "Floor"
    /// Fused domain: MatMul with transpose flags and an epilogue (bias, residual, Relu), written by
    /// the fuse-matmul-epilogue pass.
    public static let fusedMatMul = "FusedMatMul"
    public static let gather = "Gather"
    public static let gelu = "Gelu"
    public static let identity = "Identity"
    public static let layerNormalization = "LayerNormalization"
    public static let matMul = "MatMul"
    public static let mul = "Mul"
    public static let neg = "Neg"
    public static let pow = "Pow"
    public static let randomUniformLike = "RandomUniformLike"
    public static let reduceMean = "ReduceMean"
    public static let reduceSum = "ReduceSum"
    public static let relu = "Relu"
    public static let reshape = "Reshape"
    public static let resize = "Resize"
    /// Fused domain: Resize followed by an Add of a same-shaped value (and optionally a Relu), written by
    /// the fuse-resize-add pass.
    public static let resizeAdd = "ResizeAdd"
    /// Fused domain: a sum of resized channels-last (NHWC) images, then a per-channel bias and a Relu,
    /// written by the fuse-resize-sum pass.
    public static let resizeSum = "ResizeSum"
    public static let shape = "Shape"
    public static let slice = "Slice"
    public static let softmax = "Softmax"
    public static let softmaxCrossEntropyLoss = "SoftmaxCrossEntropyLoss"
    public static let sqrt = "Sqrt"
    public static let sub = "Sub"
    public static let sum = "Sum"
    public static let sumToShape = "SumToShape"
    public static let transpose = "Transpose"
    /// Fused domain: a depthwise convolution over channels-last tokens [B, H·W, C] with an optional
    /// GELU after it, written by the fuse-token-depthwise-conv pass (MixFFN's 3×3 between its Transposes).
    public static let tokenDepthwiseConv = "TokenDepthwiseConv"
    public static let upsampledCrossEntropyLoss = "UpsampledCrossEntropyLoss"
}

/// The domain of the fused forms the canonicalising passes write when the model's opset predates the
/// ONNX op (LayerNormalization came at opset 17, Gelu at 20): the same op, attributes and meaning,
/// run by the runtime's own kernel for it; and of the runtime's own fused ops (Attention).
/// Internal: a model file never needs it.
public let fusedDomain = "ai.segformer.fused"
