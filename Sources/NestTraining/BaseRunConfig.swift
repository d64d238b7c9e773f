import Foundation
import NestEngine
import NestModels

/// `nest train vae|unet|clip|image-encoder --config FILE.json`: trains one
/// component of a diffusers folder and writes it back in the same layout, so
/// the result is a model folder `nest generate` reads. `clip` trains the text
/// encoder and the image encoder together (contrastively) and writes both;
/// `image-encoder` trains the image encoder alone to tell subjects apart
/// (`IdentityEncoderTrainer`; every record needs references).
///
/// ```json
/// { "model": "models/world",       // diffusers folder: vae/ (and for unet: unet/, text_encoder/, tokenizer/, scheduler/)
///   "data": "data/images.jsonl",    // {"image": …, "caption": …} per line
///   "output": "runs/vae",
///   "resolution": 64, "batch_size": 8, "steps": 5000,
///   "learning_rate": 1e-4, "weight_decay": 0.01, "warmup_steps": 100, "schedule": "cosine",
///   "gradient_clip": 1.0, "seed": 0, "kl_weight": 1e-6, "caption_dropout": 0.1,
///   "checkpoint_every": 500, "log_every": 20 }
/// ```
/// A component whose folder holds only `config.json` starts from random
/// weights; with weights present, training continues from them (clip always
/// starts from random weights). Output: `<output>/<component>/config.json` +
/// weights (`vae/`, `unet/`, or `text_encoder/` + `image_encoder/` +
/// `clip.safetensors` with both towers and the temperature),
/// `checkpoint.safetensors`, `log.jsonl`. A trained VAE's `scaling_factor` is
/// set to 1 / (standard deviation of its latents over up to 256 training
/// images), as Stable Diffusion's 0.18215 was chosen. Unknown keys and
/// values out of range are refused, before any model is read.
public struct BaseRunConfig: Codable, CheckedConfig {
    public var model: String
    public var data: String
    public var output: String
    public var resolution: Int?
    public var batchSize: Int?
    public var steps: Int?
    public var learningRate: Float?
    public var weightDecay: Float?
    public var warmupSteps: Int?
    public var schedule: LearningRateSchedule.Decay?
    public var gradientClip: Float?
    public var seed: UInt64?
    public var klWeight: Float?
    /// VAE only, when starting (not resuming): add this to the encoder's
    /// posterior log-variance first (see `AutoencoderKL.shiftPosteriorLogVariance`).
    public var logvarShift: Float?
    public var captionDropout: Float?
    public var checkpointEvery: Int?
    public var logEvery: Int?
    /// Mirror images at random (default true). Turn off when captions name left and right.
    public var flip: Bool?
    /// Write `samples/step-N.png` every N steps: VAE reconstructions under their
    /// originals, or UNet generations of the first captions (clip: none).
    public var sampleEvery: Int?
    /// UNet only: supervise the subject noun's cross-attention with the
    /// records' `"mask"` images, `{"weight": 0.02, "words": ["critter", "bot"]}`.
    public var attentionLocalization: AttentionLocalization?
    /// UNet only: "uniform" (plain MSE, the default) or "min_snr" with `snr_gamma` (default 5).
    public var lossWeighting: String?
    public var snrGamma: Float?
    /// UNet only: decay of the exponential moving average of the weights
    /// (e.g. 0.999); the average is what the run writes and samples with.
    public var ema: Float?
    /// Ramps the EMA decay up as min(ema, (1 + n) / (10 + n)) over the first updates.
    public var emaWarmup: Bool?
    /// UNet only: records ({"image", "caption"}) whose denoising error, in
    /// ε-units with noise and timesteps fixed across runs, is logged at every checkpoint.
    public var validationData: String?
    /// `bf16`: bfloat16 products where the CPU multiplies them faster (`TrainingPrecision`).
    public var precision: TrainingPrecision?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, data, output, resolution, batchSize = "batch_size", steps, learningRate = "learning_rate"
        case weightDecay = "weight_decay", warmupSteps = "warmup_steps", schedule, gradientClip = "gradient_clip", seed
        case klWeight = "kl_weight", logvarShift = "logvar_shift", captionDropout = "caption_dropout", checkpointEvery = "checkpoint_every", logEvery = "log_every", flip, sampleEvery = "sample_every"
        case attentionLocalization = "attention_localization"
        case lossWeighting = "loss_weighting", snrGamma = "snr_gamma", ema, emaWarmup = "ema_warmup"
        case validationData = "validation_data", precision
    }

    /// The first key set that only a UNet run reads, for refusing it elsewhere.
    var unetOnlyKey: String? {
        [("loss_weighting", lossWeighting != nil), ("snr_gamma", snrGamma != nil), ("ema", ema != nil),
         ("ema_warmup", emaWarmup != nil), ("validation_data", validationData != nil)].first { $0.1 }?.0
    }

    /// The checked loss weighting (its range checks are `validate`'s).
    var weighting: LossWeighting { (try? LossWeighting.configured(lossWeighting, gamma: snrGamma)) ?? .uniform }

    var optimization: OptimizationOptions {
        OptimizationOptions(learningRate: learningRate ?? 1e-4, weightDecay: weightDecay ?? 1e-2, warmupSteps: warmupSteps ?? 0,
                            totalSteps: steps ?? 1000, schedule: schedule ?? .constant, gradientClip: gradientClip ?? 1,
                            seed: seed ?? 0)
    }
}


extension BaseRunConfig {
    /// Reads and checks a run config, everything that does not need the model:
    /// unknown keys, types, ranges. One-line errors naming the key and value.
    public static func load(from url: URL) throws -> BaseRunConfig {
        try loadTrainingConfig(BaseRunConfig.self, from: url)
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        data = try c.decode(String.self, forKey: .data)
        output = try c.decode(String.self, forKey: .output)
        resolution = try c.decodeIfPresent(Int.self, forKey: .resolution)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize)
        steps = try c.decodeIfPresent(Int.self, forKey: .steps)
        learningRate = try c.real(.learningRate)
        weightDecay = try c.real(.weightDecay)
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps)
        schedule = try c.decodeIfPresent(LearningRateSchedule.Decay.self, forKey: .schedule)
        gradientClip = try c.real(.gradientClip)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        klWeight = try c.real(.klWeight)
        logvarShift = try c.real(.logvarShift)
        captionDropout = try c.real(.captionDropout)
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery)
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery)
        flip = try c.decodeIfPresent(Bool.self, forKey: .flip)
        sampleEvery = try c.decodeIfPresent(Int.self, forKey: .sampleEvery)
        attentionLocalization = try c.decodeIfPresent(AttentionLocalization.self, forKey: .attentionLocalization)
        lossWeighting = try c.decodeIfPresent(String.self, forKey: .lossWeighting)
        snrGamma = try c.real(.snrGamma)
        ema = try c.real(.ema)
        emaWarmup = try c.decodeIfPresent(Bool.self, forKey: .emaWarmup)
        validationData = try c.decodeIfPresent(String.self, forKey: .validationData)
        precision = try c.decodeIfPresent(TrainingPrecision.self, forKey: .precision)
    }

    public func validate() throws {
        let check = ConfigCheck()
        for (key, value) in [("model", model), ("data", data), ("output", output)] { try check.text(key, value) }
        try check.int("resolution", resolution, 8...8192)
        try check.int("batch_size", batchSize, 1...65536)
        try check.int("steps", steps, 1...Int(Int32.max))
        try check.int("warmup_steps", warmupSteps, 0...Int(Int32.max))
        for (key, value) in [("checkpoint_every", checkpointEvery), ("log_every", logEvery), ("sample_every", sampleEvery)] {
            try check.int(key, value, 1...Int.max)
        }
        try check.real("learning_rate", learningRate, .positive)
        try check.real("weight_decay", weightDecay, .nonNegative)
        try check.real("gradient_clip", gradientClip, .positive)
        try check.real("kl_weight", klWeight, .nonNegative)
        // A log-variance shift past ±50 makes exp() overflow or vanish in float32.
        try check.real("logvar_shift", logvarShift, .any)
        if let shift = logvarShift, abs(shift) > 50 { throw check.fail("logvar_shift", "between -50 and 50", shift) }
        try check.real("caption_dropout", captionDropout, .probability)
        _ = try LossWeighting.configured(lossWeighting, gamma: snrGamma)
        try check.real("ema", ema, .belowOne)
        if emaWarmup != nil && ema == nil { throw ModelConfigError("ema_warmup needs \"ema\" (the decay it ramps up to)") }
        try check.text("validation_data", validationData)
        if let localization = attentionLocalization {
            try localization.validate()
            if flip ?? true {
                throw ModelConfigError("attention_localization needs \"flip\": false (the masks are not mirrored with the images)")
            }
        }
    }
}
