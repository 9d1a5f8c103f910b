/// How the fused Attention op (and its gradient) lays out Q, K, V and its output: the `layout`
/// attribute. One kernel serves both: a head's rows are read and written with the layout's row stride.
public enum AttentionLayout: String, Sendable, CaseIterable {
    /// [B…, heads, tokens, features], each head's rows contiguous (the default; the op's inputs as
    /// scaled dot-product attention writes them).
    case headsFirst = "BHSD"
    /// [B…, tokens, heads, features]: each token's heads side by side, as the linear projections write
    /// them before the export's Transpose(0, 2, 1, 3), which this layout makes unnecessary.
    case tokensFirst = "BSHD"

    public static let attribute = "layout"
}
