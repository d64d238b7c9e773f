import NestEngine
import NestIO

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
    /// Timestep spacing ("trailing" for SDXL-Turbo/Lightning); nil keeps the folder's setting.
    public var timestepSpacing: TimestepSpacing?
    /// Images per prompt. Up to `batchSize` of them are drawn from one generator
    /// as diffusers does; more come in further batches (see `batches`).
    public var count: Int
    /// Images denoised together; nil: all of `count` up to 4.
    public var batchSizeOverride: Int?
    public var batchSize: Int { batchSizeOverride ?? min(count, 4) }
    /// Image-to-image: the image to start from (see ImageToImage.swift); nil draws from noise.
    public var initImage: RGBImage?
    /// How much of the schedule image-to-image runs, in [0, 1]; nil: 0.8, diffusers'
    /// default. Double so that steps × strength truncates as Python's float does.
    public var strength: Double?

    public init(prompt: String, negativePrompt: String? = nil, steps: Int = 25, guidanceScale: Float = 7.5,
                guidanceRescale: Float = 0, seed: UInt64 = 0, width: Int? = nil, height: Int? = nil,
                scheduler: SchedulerKind? = nil, karras: Bool? = nil, count: Int = 1, batchSize: Int? = nil,
                initImage: RGBImage? = nil, strength: Double? = nil, timestepSpacing: TimestepSpacing? = nil) {
        self.prompt = prompt; self.negativePrompt = negativePrompt; self.steps = steps
        self.guidanceScale = guidanceScale; self.guidanceRescale = guidanceRescale; self.seed = seed
        self.width = width; self.height = height; self.scheduler = scheduler; self.karras = karras; self.count = count
        self.batchSizeOverride = batchSize
        self.initImage = initImage; self.strength = strength; self.timestepSpacing = timestepSpacing
    }
}

/// Reported after every denoising step. Return false from the handler to cancel.
public struct GenerationProgress {
    public let step: Int
    public let stepCount: Int
    /// The current latents, NHWC [count, h, w, C] (decode them for a preview).
    public let latents: Tensor
}

/// The model produced values that are not numbers (NaN or infinite weights, or
/// settings that overflow): an image of them would be silently black.
public struct NonFiniteGeneration: Error, CustomStringConvertible {
    public let stage: String
    public var description: String {
        "the generation produced non-finite values (\(stage)): the model's weights or the settings are not finite numbers"
    }
}

public struct GenerationCancelled: Error, CustomStringConvertible {
    public var description: String { "generation cancelled" }
}
