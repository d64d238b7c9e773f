import NestEngine
import NestModels

/// IP-Adapter's decoupled cross-attention (diffusers' IPAdapterAttnProcessor2_0):
/// out = Attention(Q, K, V) + scale · Attention(Q, K_ip, V_ip),
/// with K_ip, V_ip projected from image tokens by the adapter's own
/// `to_k_ip` / `to_v_ip`, set once per generation (batch-aligned with the
/// UNet's batch: the unconditional half gets the unconditional image tokens).
/// At scale 0 the image branch is skipped, so the result is the plain one exactly.
public final class IPAdapterProcessor: AttentionProcessor {
    public var imageKeys: Tensor?
    public var imageValues: Tensor?
    public var scale: Float
    /// The processor this one replaced, which `IPAdapter.uninstall` puts back.
    public let replaced: AttentionProcessor

    public init(scale: Float = 1, replacing replaced: AttentionProcessor = PlainAttentionProcessor()) {
        self.scale = scale
        self.replaced = replaced
    }

    public func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
        guard let context else {
            return PlainAttentionProcessor().attend(layer, hidden: hidden, context: nil)
        }
        let q = layer.to_q(hidden), (k, v) = layer.contextProjections(context)
        var out = F.attention(query: q, key: k, value: v, heads: layer.heads)
        if let ik = imageKeys, let iv = imageValues, scale != 0 {
            precondition(ik.shape[0] == hidden.shape[0],
                         "IP-Adapter: image tokens have batch \(ik.shape[0]) but the UNet runs batch \(hidden.shape[0]) "
                         + "(give tokens batch-aligned with [uncond…, cond…])")
            out = out + F.attention(query: q, key: ik, value: iv, heads: layer.heads).scaled(scale)
        }
        return layer.to_out[0](out)
    }
}
