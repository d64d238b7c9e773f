import NestEngine

/// The plain IP-Adapter's image projection (the original `ImageProjModel`,
/// diffusers' `ImageProjection`): one CLIP image embedding becomes `tokens`
/// context tokens by a Linear to tokens·width, a split, and a LayerNorm.
/// Children `proj` and `norm`, as in the original files.
public final class IPAdapterImageProjection: Module {
    public let imageEmbedDim: Int
    public let tokens: Int
    public let width: Int
    let proj: Linear
    let norm: LayerNorm

    public init(imageEmbedDim: Int, tokens: Int, width: Int) {
        self.imageEmbedDim = imageEmbedDim
        self.tokens = tokens
        self.width = width
        proj = Linear(imageEmbedDim, tokens * width)
        norm = LayerNorm(width)
        super.init()
        child("proj", proj); child("norm", norm)
    }

    /// embeds: [N, imageEmbedDim] → [N, tokens, width].
    public func callAsFunction(_ embeds: Tensor) -> Tensor {
        norm(proj(embeds).reshaped([embeds.shape[0], tokens, width]))
    }
}
