import NestEngine
import NestIO
import NestModels

/// Image-to-image as diffusers' StableDiffusionImg2ImgPipeline and
/// StableDiffusionXLImg2ImgPipeline do it: the init image is encoded by the VAE,
/// a latent is drawn from its posterior with the request's generator, noised to
/// the level of the first step that runs, and only the last
/// int(steps × strength) steps of the schedule are denoised.
extension GenerationConfiguration {
    /// diffusers' default strength for Stable Diffusion image-to-image.
    public static let defaultStrength = 0.8

    /// The strength in effect (image-to-image only).
    public var effectiveStrength: Double { strength ?? Self.defaultStrength }

    /// diffusers' `get_timesteps`: the schedule index of the first step that runs
    /// (0 for text-to-image).
    public var firstStep: Int {
        guard initImage != nil else { return 0 }
        return steps - Self.imageToImageSteps(steps: steps, strength: effectiveStrength)
    }

    /// How many of `steps` denoising steps image-to-image runs at `strength`:
    /// int(steps × strength), at most `steps` (diffusers' rule; 0 is refused).
    public static func imageToImageSteps(steps: Int, strength: Double) -> Int {
        min(Int(Double(steps) * strength), steps)
    }

    /// The denoising steps that run: all of them, or int(steps × strength) for image-to-image.
    public var denoisingSteps: Int { steps - firstStep }

    /// The model-free part of the image-to-image check: strength in range and
    /// leaving at least one step, and an init image the size limits allow.
    func validateImageToImage(limits: GenerationLimits) throws {
        if let strength { try checkRange(strength, 0...1, field: "strength") }
        guard let image = initImage else {
            if strength != nil { throw GenerationRequestError(field: "init_image", "is missing: strength applies to image-to-image") }
            return
        }
        guard denoisingSteps >= 1 else {
            throw GenerationRequestError(field: "strength", "\(effectiveStrength) × \(steps) steps leaves no denoising step (int(steps × strength) steps run); raise strength or steps")
        }
        let w = width ?? image.width, h = height ?? image.height
        if (width == nil && image.width > limits.maxSide) || (height == nil && image.height > limits.maxSide)
            || ((width == nil || height == nil) && w * h > limits.maxPixels) {
            throw GenerationRequestError(field: "init_image", "is \(image.width)×\(image.height), and image-to-image keeps its size: more than the \(limits.maxSide)-pixel side or \(limits.maxPixels)-pixel limit; give width and height to resize it")
        }
    }
}

extension StableDiffusionPipeline {
    /// The init image as the VAE takes it: resized with Lanczos to `height`×`width` when
    /// its size differs (diffusers' VaeImageProcessor through Pillow), alpha dropped,
    /// mapped to [-1, 1]: [1, height, width, 3].
    public static func imageTensor(_ image: RGBImage, height: Int, width: Int) -> Tensor {
        var pixels = image.pixels
        if image.width != width || image.height != height {
            pixels = pillowResize(pixels, width: image.width, height: image.height, outWidth: width, outHeight: height,
                                  filter: .lanczos)
        }
        // x / 255 · 2 − 1 per byte, as diffusers' pil_to_numpy and normalize.
        let table = (0...255).map { -1 + Float($0) / 255 * 2 }
        return Tensor(pixels.map { table[Int($0)] }, shape: [1, height, width, 3])
    }

    /// The noised latents image-to-image starts from, [count, h, w, C]. The generator is
    /// drawn from as diffusers does: first the posterior sample of the one encoded
    /// image (repeated for the batch), then the noise for every image.
    func imageToImageLatents(_ c: GenerationConfiguration, image: RGBImage, height: Int, width: Int,
                             scheduler: any Scheduler, generator: TorchGenerator) -> Tensor {
        let posterior = vae.encode(Self.imageTensor(image, height: height, width: width))
        let shape = posterior.mean.shape
        let sampleNoise = generator.randn([shape[0], shape[3], shape[1], shape[2]]).permuted([0, 2, 3, 1])
        let latent = posterior.sample(noise: sampleNoise).scaled(Float(vae.config.scalingFactor))
        let batch = c.count == 1 ? latent : F.concat(Array(repeating: latent, count: c.count), axis: 0)
        let noise = generator.randn([c.count, shape[3], shape[1], shape[2]]).permuted([0, 2, 3, 1])
        return scheduler.addNoise(original: batch, noise: noise, step: c.firstStep)
    }
}
