import NestEngine
import NestModels

extension IPAdapter {
    /// The image-encoder output this adapter reads, for reference images and for
    /// the unconditional branch, as diffusers' `StableDiffusionPipeline.encode_image`
    /// makes them:
    /// - plain: `image_embeds` (the projected pooled state); unconditional = zeros of that shape;
    /// - Plus: `hidden_states[-2]` (the penultimate layer's output, before any norm);
    ///   unconditional = the same of an all-zero *preprocessed* pixel tensor
    ///   (`zeros_like(pixel_values)`, i.e. the dataset mean, not a black image).
    ///
    /// pixels: [n, S, S, 3] already preprocessed (`CLIPImageProcessor`). The n images
    /// belong to one prompt: features come back with batch 1 and n images,
    /// [1, n, D] (plain) or [1, n, 1 + patches, D] (Plus).
    public func imageFeatures(pixels: Tensor, encoder: CLIPVisionModel) throws -> (uncond: Tensor, cond: Tensor) {
        let n = pixels.shape[0]
        switch layout.projection {
        case let .plain(dim, _):
            guard encoder.visual_projection != nil else {
                throw IPAdapterError("this IP-Adapter reads image_embeds, but the image encoder has no visual_projection")
            }
            guard encoder.config.projectionDim == dim else {
                throw IPAdapterError("this IP-Adapter reads \(dim)-wide image_embeds, the image encoder makes "
                                     + "\(encoder.config.projectionDim)-wide ones: wrong image encoder for this adapter")
            }
            let embeds = encoder.forward(pixels: pixels).imageEmbeds!.reshaped([1, n, dim])
            return (Tensor(zeros: embeds.shape), embeds)
        case let .plus(config):
            let width = encoder.config.encoder.hiddenSize
            guard width == config.embeddingDim else {
                throw IPAdapterError("this IP-Adapter Plus reads \(config.embeddingDim)-wide hidden states, the image "
                                     + "encoder's are \(width) wide: wrong image encoder for this adapter")
            }
            // hidden_states[-2] is the output after all but the last layer, so the last layer need not run.
            let penultimate = encoder.config.encoder.layers - 1
            func states(_ p: Tensor) -> Tensor {
                let h = encoder.forward(pixels: p, layers: penultimate).lastHiddenState
                return h.reshaped([1, n, h.shape[1], width])
            }
            return (states(Tensor(zeros: pixels.shape)), states(pixels))
        }
    }

    /// Tokens for a guided batch of `count` images per prompt, in the order the
    /// UNet batch runs: [uncond × count, cond × count], each [n·tokens, cross]
    /// (diffusers' `prepare_ip_adapter_image_embeds` with classifier-free guidance).
    public func guidanceTokens(pixels: Tensor, encoder: CLIPVisionModel, count: Int = 1) throws -> Tensor {
        let features = try imageFeatures(pixels: pixels, encoder: encoder)
        let uncond = imageTokens(features.uncond), cond = imageTokens(features.cond)
        return F.concat(Array(repeating: uncond, count: count) + Array(repeating: cond, count: count), axis: 0)
    }
}
