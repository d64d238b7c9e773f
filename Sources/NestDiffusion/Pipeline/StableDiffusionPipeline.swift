import Foundation
import NestEngine
import NestIO
import NestModels

/// Text-to-image with SD 1.x, 2.x and SDXL from a diffusers folder, step for
/// step as diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline:
/// the same seed gives the same image.
public final class StableDiffusionPipeline {
    public let folder: ModelFolder
    public let prompts: PromptEncoder
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let schedulerConfig: SchedulerConfig
    /// SDXL: an absent negative prompt becomes zero conditioning.
    public let forceZerosForEmptyPrompt: Bool

    public init(folder: ModelFolder, prompts: PromptEncoder, unet: UNet2DConditionModel, vae: AutoencoderKL,
                schedulerConfig: SchedulerConfig, forceZerosForEmptyPrompt: Bool) {
        self.folder = folder; self.prompts = prompts; self.unet = unet; self.vae = vae
        self.schedulerConfig = schedulerConfig; self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt
    }

    public static func load(folder url: URL, variant: String? = nil) throws -> StableDiffusionPipeline {
        let folder = try ModelFolder(url: url)
        let prompts = try PromptEncoder.load(folder: folder, variant: variant)
        let unet = try UNet2DConditionModel.load(folder: try folder.component("unet"), variant: variant)
        let vae = try AutoencoderKL.load(folder: try folder.component("vae"), variant: variant)
        let schedulerURL = try folder.component("scheduler").appendingPathComponent("scheduler_config.json")
        let schedulerConfig = try SchedulerConfig.load(from: schedulerURL)
        // ModelFolder has read model_index.json already; a second read can only fail if it vanished meanwhile.
        let index = (try? JSONSerialization.jsonObject(with: readConfigFile(url.appendingPathComponent("model_index.json")))) as? [String: Any]
        let forceZeros = (index?["force_zeros_for_empty_prompt"] as? Bool) ?? prompts.isXL
        return StableDiffusionPipeline(folder: folder, prompts: prompts, unet: unet, vae: vae,
                                       schedulerConfig: schedulerConfig, forceZerosForEmptyPrompt: forceZeros)
    }

    public var vaeScaleFactor: Int { vae.downsamplingFactor }
    public var geometry: PipelineGeometry {
        PipelineGeometry(vaeFactor: vaeScaleFactor, unetFactor: unet.downscaleFactor, sampleSize: unet.config.sampleSize)
    }
    /// The UNet's sample_size × the VAE factor: (height, width).
    public var defaultSize: (height: Int, width: Int) { geometry.defaultSize }

    /// Checks a request before any work: the limits (`GenerationConfiguration.validate`)
    /// and the sizes this model takes, with messages naming the field.
    public func validate(_ c: GenerationConfiguration, limits: GenerationLimits = .standard) throws {
        try c.validate(limits: limits)
        try geometry.validate(c)
    }

    /// The scheduler a configuration asks for, built from the folder's config values.
    public func makeScheduler(_ c: GenerationConfiguration) throws -> any Scheduler {
        var config = schedulerConfig
        if let spacing = c.timestepSpacing { config.timestepSpacing = spacing.rawValue }
        return try NestDiffusion.makeScheduler(kind: c.scheduler, config: config, karras: c.karras, stepCount: c.steps)
    }

    /// Classifier-free guidance runs (two UNet batches per step) when the scale is
    /// above 1 and the UNet does not take the scale as an embedding instead
    /// (diffusers' `do_classifier_free_guidance`).
    public func usesGuidance(_ c: GenerationConfiguration) -> Bool {
        c.guidanceScale > 1 && unet.config.timeConditionDim == nil
    }

    /// Generates `count` images; values in [0, 1], NHWC [count, height, width, 3].
    /// `conditioning` sees (and may change) the encoded prompts before sampling —
    /// personalization installs its layers there and the single-token baseline
    /// rewrites the placeholder's row. With an init image, image-to-image.
    public func generate(_ c: GenerationConfiguration,
                         conditioning: ((inout EncodedPrompts, inout EncodedPrompts?) throws -> Void)? = nil,
                         progress: ((GenerationProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(c)
        // One call is one batch; `generateImages` splits larger requests.
        try checkRange(c.count, 1...GenerationLimits.standard.maxBatchSize, field: "count")
        return try Autograd.noGrad {
            let (height, width) = geometry.size(of: c)
            let text = try encodeText(c, height: height, width: width, conditioning: conditioning)
            var scheduler = try makeScheduler(c)
            scheduler.latentLayout = .nhwc
            let generator = TorchGenerator(seed: c.seed)
            var latents: Tensor
            if let image = c.initImage {
                latents = imageToImageLatents(c, image: image, height: height, width: width, scheduler: scheduler, generator: generator)
            } else {
                let (h, w) = (height / vaeScaleFactor, width / vaeScaleFactor)
                // diffusers draws the initial noise in NCHW order from the seeded generator.
                latents = generator.randn([c.count, unet.config.inChannels, h, w]).permuted([0, 2, 3, 1])
                    .scaled(scheduler.initNoiseSigma)
            }
            latents = try denoise(latents, c, text: text, scheduler: &scheduler, generator: generator, progress: progress)
            let images = decode(latents)
            guard images.allFinite else { throw NonFiniteGeneration(stage: "the VAE decode") }
            return images
        }
    }

    /// What the UNet is conditioned on besides the latents, for every step.
    struct TextConditioning {
        let context: Tensor
        let added: (textEmbeds: Tensor, timeIds: Tensor)?
        let guided: Bool
    }

    /// Encodes the prompts (and the negative ones when guided) and SDXL's size conditioning.
    func encodeText(_ c: GenerationConfiguration, height: Int, width: Int,
                    conditioning: ((inout EncodedPrompts, inout EncodedPrompts?) throws -> Void)?) throws -> TextConditioning {
        let guided = usesGuidance(c)
        var positive = prompts.encode(Array(repeating: c.prompt, count: c.count))
        var negative: EncodedPrompts? = nil
        if guided {
            let zeros = c.negativePrompt == nil && forceZerosForEmptyPrompt && prompts.isXL
            negative = prompts.encode(Array(repeating: c.negativePrompt ?? "", count: c.count), zeros: zeros)
        }
        try conditioning?(&positive, &negative)
        let context = negative.map { F.concat([$0.hidden, positive.hidden], axis: 0) } ?? positive.hidden
        var added: (textEmbeds: Tensor, timeIds: Tensor)? = nil
        if let pooled = positive.pooled {
            let batch = guided ? 2 * c.count : c.count
            // original size + crop top-left + target size, per batch item.
            let perItem: [Float] = [Float(height), Float(width), 0, 0, Float(height), Float(width)]
            let ids: [Float] = (0..<batch).flatMap { _ in perItem }
            let embeds = negative?.pooled.map { F.concat([$0, pooled], axis: 0) } ?? pooled
            added = (embeds, Tensor(ids, shape: [batch, 6]))
        }
        return TextConditioning(context: context, added: added, guided: guided)
    }

    /// Runs the schedule from `c.firstStep` to the end.
    func denoise(_ start: Tensor, _ c: GenerationConfiguration, text: TextConditioning, scheduler: inout any Scheduler,
                 generator: TorchGenerator, progress: ((GenerationProgress) -> Bool)?) throws -> Tensor {
        var latents = start
        // LCM-distilled UNets take the guidance scale as an embedding of w = scale − 1.
        let timeCondition = unet.config.timeConditionDim.map { guidanceScaleEmbedding(c.guidanceScale - 1, dim: $0, count: c.count) }
        let first = c.firstStep, total = scheduler.stepCount - first
        // The context is the same tensor at every step: its cross-attention keys
        // and values are computed once.
        try ContextProjections.reusing {
            for step in first..<scheduler.stepCount {
                let input = text.guided ? F.concat([latents, latents], axis: 0) : latents
                let scaled = scheduler.scaleModelInput(input, step: step)
                let t = scheduler.timesteps[step]
                var noise = unet(sample: scaled, timestep: Array(repeating: t, count: scaled.shape[0]),
                                 encoderHiddenStates: text.context, added: text.added, timestepCondition: timeCondition)
                if text.guided {
                    let halves = noise.chunked(2, axis: 0)
                    let (uncond, positive) = (halves[0], halves[1])
                    noise = uncond + (positive - uncond) * c.guidanceScale
                    if c.guidanceRescale > 0 { noise = rescaleGuidance(noise, text: positive, phi: c.guidanceRescale) }
                }
                latents = scheduler.step(modelOutput: noise, step: step, sample: latents, generator: generator)
                let done = step - first + 1
                guard latents.allFinite else { throw NonFiniteGeneration(stage: "denoising step \(done) of \(total)") }
                if let progress, !progress(GenerationProgress(step: done, stepCount: total, latents: latents)) {
                    throw GenerationCancelled()
                }
            }
        }
        return latents
    }

    /// Latents → images in [0, 1] (SD pipelines divide by scaling_factor only).
    /// NaN stays NaN (clamping would turn it into black), for the caller to report.
    public func decode(_ latents: Tensor) -> Tensor {
        let image = Autograd.noGrad { vae.decode(latents / Tensor(scalar: Float(vae.config.scalingFactor))) }
        let out = Tensor(uninitialized: image.shape)
        for i in 0..<image.count {
            let v = image.data[i] / 2 + 0.5
            out.data[i] = v.isNaN ? v : min(1, max(0, v))
        }
        return out
    }

    /// 8-bit images as diffusers' `numpy_to_pil` makes them: round(x·255).
    /// `range`: the values that map to black and white — 0...1 for what
    /// `generate` returns, -1...1 for a VAE's own input and output.
    public static func images(_ batch: Tensor, range: ClosedRange<Float> = 0...1) throws -> [RGBImage] {
        let (n, h, w) = (batch.shape[0], batch.shape[1], batch.shape[2])
        return try (0..<n).map { i in
            let floats = Array(UnsafeBufferPointer(start: batch.data + i * h * w * 3, count: h * w * 3))
            return try RGBImage(width: w, height: h, floats: floats, range: range)
        }
    }
}

/// Guidance rescale: match the per-sample standard deviation of the guided
/// prediction to the text prediction's, blended by φ (unbiased std, as torch).
func rescaleGuidance(_ guided: Tensor, text: Tensor, phi: Float) -> Tensor {
    let n = guided.shape[0], per = guided.count / n
    let out = Tensor(uninitialized: guided.shape)
    func std(_ t: Tensor, _ i: Int) -> Double {
        var mean = 0.0
        for j in 0..<per { mean += Double(t.data[i * per + j]) }
        mean /= Double(per)
        var v = 0.0
        for j in 0..<per { let d = Double(t.data[i * per + j]) - mean; v += d * d }
        return (v / Double(max(per - 1, 1))).squareRoot()
    }
    for i in 0..<n {
        let ratio = Float(std(text, i) / std(guided, i))
        for j in 0..<per {
            let g = guided.data[i * per + j]
            out.data[i * per + j] = phi * g * ratio + (1 - phi) * g
        }
    }
    return out
}
