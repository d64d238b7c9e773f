import NestEngine

/// diffusers' ResnetBlock2D: GroupNorm → SiLU → conv, plus an optional
/// projected time embedding, GroupNorm → SiLU → conv, and a (1×1 conv)
/// shortcut when the channel count changes. Channels-last throughout.
public final class ResnetBlock2D: Module {
    public enum TimeEmbeddingNorm: String, Sendable { case `default`, scaleShift = "scale_shift" }

    public let norm1: GroupNorm, conv1: Conv2d
    public let time_emb_proj: Linear?
    public let norm2: GroupNorm, conv2: Conv2d
    public let conv_shortcut: Conv2d?
    public let outputScaleFactor: Float
    public let timeEmbeddingNorm: TimeEmbeddingNorm

    public init(inChannels: Int, outChannels: Int? = nil, tembChannels: Int?, groups: Int = 32, groupsOut: Int? = nil,
                eps: Float = 1e-6, outputScaleFactor: Float = 1, timeEmbeddingNorm: TimeEmbeddingNorm = .default,
                useInShortcut: Bool? = nil, convShortcutBias: Bool = true) {
        let out = outChannels ?? inChannels
        norm1 = GroupNorm(groups: groups, channels: inChannels, eps: eps)
        conv1 = Conv2d(inChannels, out, kernelSize: 3, padding: 1)
        time_emb_proj = tembChannels.map { Linear($0, timeEmbeddingNorm == .scaleShift ? 2 * out : out) }
        norm2 = GroupNorm(groups: groupsOut ?? groups, channels: out, eps: eps)
        conv2 = Conv2d(out, out, kernelSize: 3, padding: 1)
        conv_shortcut = (useInShortcut ?? (inChannels != out))
            ? Conv2d(inChannels, out, kernelSize: 1, bias: convShortcutBias) : nil
        self.outputScaleFactor = outputScaleFactor
        self.timeEmbeddingNorm = timeEmbeddingNorm
        super.init()
        child("norm1", norm1); child("conv1", conv1)
        if let time_emb_proj { child("time_emb_proj", time_emb_proj) }
        child("norm2", norm2); child("conv2", conv2)
        if let conv_shortcut { child("conv_shortcut", conv_shortcut) }
    }

    /// x: [N, H, W, C]; temb: [N, tembChannels] (already the block-independent embedding).
    public func callAsFunction(_ x: Tensor, temb: Tensor? = nil) -> Tensor {
        var h = conv1(norm1.silu(x))
        var scaleShift: [Tensor]? = nil
        if let temb, let proj = time_emb_proj {
            let t = proj(F.silu(temb))
            let n = t.shape[0], c = t.shape[1]
            switch timeEmbeddingNorm {
            case .default: h = h + t.reshaped([n, 1, 1, c])
            case .scaleShift: scaleShift = t.reshaped([n, 1, 1, c]).chunked(2, axis: -1)
            }
        }
        if let ss = scaleShift {
            h = norm2(h) * (ss[0] + 1) + ss[1]
            h = conv2(F.silu(h))
        } else {
            h = conv2(norm2.silu(h))
        }
        let shortcut = conv_shortcut.map { $0(x) } ?? x
        let sum = shortcut + h
        return outputScaleFactor == 1 ? sum : sum.scaled(1 / outputScaleFactor)
    }
}
