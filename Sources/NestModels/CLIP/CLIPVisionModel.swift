import Foundation
import NestEngine
import NestIO

/// What a CLIP image encoder returns, named as transformers names it.
public struct CLIPVisionOutput {
    /// [B, 1 + patches, D]: the last computed layer's output (no norm; only `pooled` is normed).
    public let lastHiddenState: Tensor
    /// `pre_layrnorm`'d embeddings, then each layer's output: `hiddenStates[count - 2]`
    /// is the penultimate state IP-Adapter Plus style resamplers read.
    public let hiddenStates: [Tensor]
    /// [B, D]: the class token of `lastHiddenState` after `post_layernorm`.
    public let pooled: Tensor
    /// [B, projection_dim]: `pooled` through `visual_projection` (WithProjection checkpoints only).
    public let imageEmbeds: Tensor?
}

/// Patch embedding (a stride-`patch` convolution without bias), a learned class
/// token in front, then learned absolute position embeddings.
public final class CLIPVisionEmbeddings: Module {
    public let class_embedding: Tensor
    public let patch_embedding: Conv2d
    public let position_embedding: Embedding

    public init(config: CLIPVisionConfig) {
        let d = config.encoder.hiddenSize
        class_embedding = ParameterShapes.make([d]) { Tensor.randn([d], seed: 0) }
        patch_embedding = Conv2d(config.channels, d, kernelSize: config.patchSize, stride: config.patchSize, bias: false)
        position_embedding = Embedding(config.gridSize * config.gridSize + 1, d)
        super.init()
        parameter("class_embedding", class_embedding)
        child("patch_embedding", patch_embedding); child("position_embedding", position_embedding)
    }

    /// pixels: [B, S, S, C] → [B, 1 + (S/patch)², D].
    public func callAsFunction(_ pixels: Tensor) -> Tensor {
        let patches = patch_embedding(pixels)
        let (b, d) = (patches.shape[0], patches.shape[3])
        let tokens = patches.reshaped([b, patches.shape[1] * patches.shape[2], d])
        let cls = Tensor(zeros: [b, 1, d]) + class_embedding  // broadcast keeps the gradient path
        return F.concat([cls, tokens], axis: 1) + position_embedding.weight
    }
}

/// transformers' `CLIPVisionTransformer` (the `vision_model` of a checkpoint).
/// `pre_layrnorm` is spelled as the checkpoints spell it.
public final class CLIPVisionTransformer: Module {
    public let config: CLIPVisionConfig
    public let embeddings: CLIPVisionEmbeddings
    public let pre_layrnorm: LayerNorm
    public let encoder: CLIPEncoder
    public let post_layernorm: LayerNorm

    public init(config: CLIPVisionConfig) {
        self.config = config
        let shape = config.encoder
        embeddings = CLIPVisionEmbeddings(config: config)
        pre_layrnorm = LayerNorm(shape.hiddenSize, eps: shape.layerNormEps)
        encoder = CLIPEncoder(shape)
        post_layernorm = LayerNorm(shape.hiddenSize, eps: shape.layerNormEps)
        super.init()
        child("embeddings", embeddings); child("pre_layrnorm", pre_layrnorm)
        child("encoder", encoder); child("post_layernorm", post_layernorm)
    }

    /// pixels: [B, S, S, C] normalized, S = image_size. `layers` runs only the first N
    /// encoder layers (pooling then reads layer N's class token).
    public func forward(pixels: Tensor, layers: Int? = nil) -> (last: Tensor, states: [Tensor], pooled: Tensor) {
        let s = config.imageSize
        precondition(pixels.rank == 4 && pixels.shape[1] == s && pixels.shape[2] == s
                     && pixels.shape[3] == config.channels,
                     "CLIP image encoder expects [B, \(s), \(s), \(config.channels)] pixels, got \(pixels.shape)")
        let states = encoder(pre_layrnorm(embeddings(pixels)), causal: false, count: layers)
        let last = states[states.count - 1]
        let classToken = last.slice(axis: 1, 0..<1).reshaped([last.shape[0], last.shape[2]])
        return (last, states, post_layernorm(classToken))
    }
}

/// transformers' `CLIPVisionModelWithProjection` (or `CLIPVisionModel` when the
/// checkpoint has no `visual_projection`), e.g. IP-Adapter's `image_encoder`.
public final class CLIPVisionModel: Module {
    public let config: CLIPVisionConfig
    public let vision_model: CLIPVisionTransformer
    /// Bias-free [projection_dim, hidden_size] projection of the pooled state.
    public let visual_projection: Linear?

    public init(config: CLIPVisionConfig, withProjection: Bool = true) {
        self.config = config
        vision_model = CLIPVisionTransformer(config: config)
        visual_projection = withProjection ? Linear(config.encoder.hiddenSize, config.projectionDim, bias: false) : nil
        super.init()
        child("vision_model", vision_model)
        if let visual_projection { child("visual_projection", visual_projection) }
    }

    /// Builds the model from `folder/config.json` and loads its weights strictly;
    /// `withProjection` nil follows the checkpoint.
    public static func load(folder: URL, withProjection: Bool? = nil, variant: String? = nil) throws -> CLIPVisionModel {
        let config = try decodeConfig(CLIPVisionConfig.self, from: folder.appendingPathComponent("config.json"))
        let checkpoint = try CLIPCheckpoint(folder: folder, variant: variant)
        let projection = withProjection ?? checkpoint.has("visual_projection.weight")
        return try checkpoint.build(prefix: "vision_model", withProjection: projection, tower: { $0.vision_model }) {
            CLIPVisionModel(config: config, withProjection: projection)
        }
    }

    /// pixels: [B, S, S, C] NHWC, already preprocessed (see `CLIPImageProcessor`).
    public func forward(pixels: Tensor, layers: Int? = nil) -> CLIPVisionOutput {
        let out = vision_model.forward(pixels: pixels, layers: layers)
        return CLIPVisionOutput(lastHiddenState: out.last, hiddenStates: out.states, pooled: out.pooled,
                                imageEmbeds: visual_projection.map { $0(out.pooled) })
    }
}
