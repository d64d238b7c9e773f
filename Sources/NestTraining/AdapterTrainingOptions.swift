import NestEngine
import NestModels

/// How an adapter is trained (defaults: the IP-Adapter SDXL recipe the
/// paper's authors build on: AdamW 1e-4, weight decay 1e-2, 5% dropped image,
/// 5% dropped text, 5% both).
public struct AdapterTrainingOptions: Codable, Sendable, Equatable {
    public var resolution: Int = 64
    public var batchSize: Int = 4
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 1e-2
    public var warmupSteps: Int = 0
    public var totalSteps: Int = 1000
    public var schedule: LearningRateSchedule.Decay = .constant
    public var gradientClip: Float? = 1
    public var gradientAccumulation: Int = 1
    /// Exponential moving average of the trained weights (nil: off).
    public var ema: Float? = nil
    public var dropImage: Float = 0.05
    public var dropText: Float = 0.05
    public var dropBoth: Float = 0.05
    public var seed: UInt64 = 0
    /// Mirror targets at random. Turn off when captions name left and right.
    public var flipTargets = true
    /// How much more the subject's pixels count in the loss than the rest
    /// (1: plain MSE). Needs a mask per record; the masked diffusion loss of
    /// Break-A-Scene: a small model's loss is mostly background, and an
    /// encoder learns little of who the subject is from it.
    public var subjectLossWeight: Float = 1
    /// Training timesteps are drawn uniformly from `lower..<upper` (nil: all
    /// of the scheduler's). At low noise the noisy latent already shows who
    /// the subject is, so an encoder's signal there is nearly nil; a range
    /// that leaves them out spends the steps where identity is decided.
    public var timestepRange: [Int]? = nil
    /// Also train the base UNet at this rate (nil: it stays frozen, the
    /// paper's setting). For a small base whose cross-attention never learned
    /// to draw what a subject token's value says about an individual (the
    /// miniature world's), the UNet learns it with the adapter; the run then
    /// writes the UNet it trained beside the adapter.
    public var unetLearningRate: Float? = nil

    /// `bf16`: bfloat16 products where the CPU multiplies them faster (`TrainingPrecision`).
    public var precision: TrainingPrecision = .float32

    public init() {}

    /// Every key is optional in a config file; absent ones keep the defaults above.
    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        resolution = try c.decodeIfPresent(Int.self, forKey: .resolution) ?? resolution
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        learningRate = try c.real(.learningRate) ?? learningRate
        weightDecay = try c.real(.weightDecay) ?? weightDecay
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? warmupSteps
        totalSteps = try c.decodeIfPresent(Int.self, forKey: .totalSteps) ?? totalSteps
        schedule = try c.decodeIfPresent(LearningRateSchedule.Decay.self, forKey: .schedule) ?? schedule
        gradientClip = try c.real(.gradientClip) ?? gradientClip
        gradientAccumulation = try c.decodeIfPresent(Int.self, forKey: .gradientAccumulation) ?? gradientAccumulation
        ema = try c.real(.ema)
        dropImage = try c.real(.dropImage) ?? dropImage
        dropText = try c.real(.dropText) ?? dropText
        dropBoth = try c.real(.dropBoth) ?? dropBoth
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        flipTargets = try c.decodeIfPresent(Bool.self, forKey: .flipTargets) ?? flipTargets
        subjectLossWeight = try c.real(.subjectLossWeight) ?? subjectLossWeight
        timestepRange = try c.decodeIfPresent([Int].self, forKey: .timestepRange)
        unetLearningRate = try c.real(.unetLearningRate)
        precision = try c.decodeIfPresent(TrainingPrecision.self, forKey: .precision) ?? precision
        try validate()
    }

    /// Checks every value that does not depend on the model (the timestep
    /// range's upper end is checked against the scheduler by the trainer).
    public func validate() throws {
        let check = ConfigCheck(section: "training")
        try check.int("resolution", resolution, 8...8192)
        try check.int("batch_size", batchSize, 1...65536)
        try check.int("steps", totalSteps, 1...Int(Int32.max))
        try check.int("warmup_steps", warmupSteps, 0...Int(Int32.max))
        try check.int("gradient_accumulation", gradientAccumulation, 1...65536)
        try check.real("learning_rate", learningRate, .positive)
        try check.real("unet_learning_rate", unetLearningRate, .positive)
        try check.real("weight_decay", weightDecay, .nonNegative)
        try check.real("gradient_clip", gradientClip, .positive)
        try check.real("ema", ema, .belowOne)
        try check.real("drop_image", dropImage, .probability)
        try check.real("drop_text", dropText, .probability)
        try check.real("drop_both", dropBoth, .probability)
        // The three dropouts are exclusive outcomes of one draw.
        if dropImage + dropText + dropBoth > 1 {
            throw ModelConfigError("training: drop_image + drop_text + drop_both must be at most 1, got \(dropImage + dropText + dropBoth)")
        }
        try check.real("subject_loss_weight", subjectLossWeight, .positive)
        if let r = timestepRange, r.count != 2 || r[0] < 0 || r[0] >= r[1] {
            throw ModelConfigError("training.timestep_range must be [lower, upper] with 0 <= lower < upper, got \(r)")
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case resolution, batchSize = "batch_size", learningRate = "learning_rate", weightDecay = "weight_decay"
        case warmupSteps = "warmup_steps", totalSteps = "steps", schedule, gradientClip = "gradient_clip"
        case gradientAccumulation = "gradient_accumulation", ema, dropImage = "drop_image", dropText = "drop_text"
        case dropBoth = "drop_both", seed, flipTargets = "flip_targets", subjectLossWeight = "subject_loss_weight"
        case timestepRange = "timestep_range", precision, unetLearningRate = "unet_learning_rate"
    }
}
