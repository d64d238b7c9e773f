import NestEngine

/// What to generate; every field has the default a user of diffusers would expect.
public struct GenerationConfiguration: Sendable, Equatable {
    public var prompt: String
    /// nil: no negative prompt (SDXL then uses zero conditioning when the
    /// model asks for it, SD 1/2 the empty prompt), as diffusers does.
    public var negativePrompt: String?
    public var steps: Int
    /// Classifier-free guidance; ≤ 1 turns guidance off (one UNet batch instead of two).
    public var guidanceScale: Float
    /// φ of "Common Diffusion Noise Schedules…": 0 leaves guidance unchanged.
    public var guidanceRescale: Float
    public var seed: UInt64
    /// Output size in pixels; nil takes the UNet's sample_size × the VAE factor.
    public var width: Int?
    public var height: Int?
    /// Sampler; nil takes the model folder's scheduler.
    public var scheduler: SchedulerKind?
    /// Karras sigmas (Euler, DPM++); nil keeps the folder's setting.
    public var karras: Bool?
    /// Images per prompt, drawn from one generator as diffusers does.
    public var count: Int

    public init(prompt: String, negativePrompt: String? = nil, steps: Int = 25, guidanceScale: Float = 7.5,
                guidanceRescale: Float = 0, seed: UInt64 = 0, width: Int? = nil, height: Int? = nil,
                scheduler: SchedulerKind? = nil, karras: Bool? = nil, count: Int = 1) {
        self.prompt = prompt; self.negativePrompt = negativePrompt; self.steps = steps
        self.guidanceScale = guidanceScale; self.guidanceRescale = guidanceRescale; self.seed = seed
        self.width = width; self.height = height; self.scheduler = scheduler; self.karras = karras; self.count = count
    }
}

/// Reported after every denoising step. Return false from the handler to cancel.
public struct GenerationProgress {
    public let step: Int
    public let stepCount: Int
    /// The current latents, NHWC [count, h, w, C] (decode them for a preview).
    public let latents: Tensor
}

public struct GenerationCancelled: Error, CustomStringConvertible {
    public var description: String { "generation cancelled" }
}
