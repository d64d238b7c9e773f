import NestEngine

/// The bounds every generation request is held to, whoever sends it (the command
/// line, a server, the evaluation). They keep one request from running for hours
/// or exhausting memory; each is far past what the supported models are made for
/// (SDXL draws 1024², SD 1.x 512²).
public struct GenerationLimits: Sendable, Equatable {
    /// Longest side in pixels.
    public var maxSide = 4096
    /// Pixels per image (2048 × 2048).
    public var maxPixels = 2048 * 2048
    public var maxSteps = 1000
    /// Images per request; they are generated and handed out batch by batch.
    public var maxCount = 10_000
    /// Images denoised together (the UNet's batch is twice this with guidance).
    public var maxBatchSize = 16
    /// Characters in a prompt or negative prompt (CLIP reads the first 75 tokens).
    public var maxPromptCharacters = 20_000
    /// Classifier-free guidance scale.
    public var guidance: ClosedRange<Float> = 0...100

    public init() {}
    public static let standard = GenerationLimits()
}

/// A request field that is out of its range, named as the library calls it
/// (`steps`, `guidance`, `width`, …) so that each front end can name its own option.
public struct GenerationRequestError: Error, CustomStringConvertible, Equatable, Sendable {
    public let field: String
    public let problem: String
    public init(field: String, _ problem: String) { self.field = field; self.problem = problem }
    public var description: String { "\(field) \(problem)" }
}

/// Checks that a number is finite and inside `range`; the message names both.
public func checkRange<T: BinaryFloatingPoint>(_ value: T, _ range: ClosedRange<T>, field: String) throws {
    guard value.isFinite else { throw GenerationRequestError(field: field, "must be a finite number, got \(value)") }
    guard range.contains(value) else {
        throw GenerationRequestError(field: field, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
    }
}

public func checkRange(_ value: Int, _ range: ClosedRange<Int>, field: String) throws {
    guard range.contains(value) else {
        throw GenerationRequestError(field: field, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
    }
}

extension GenerationConfiguration {
    /// Everything that can be checked without the model: ranges, finite numbers,
    /// prompt lengths, the size limits. Run before loading anything.
    public func validate(limits: GenerationLimits = .standard) throws {
        for (text, field) in [(prompt, "prompt"), (negativePrompt ?? "", "negative_prompt")] where text.count > limits.maxPromptCharacters {
            throw GenerationRequestError(field: field, "is \(text.count) characters, more than the \(limits.maxPromptCharacters) allowed")
        }
        try checkRange(steps, 1...limits.maxSteps, field: "steps")
        try checkRange(count, 1...limits.maxCount, field: "count")
        try checkRange(batchSize, 1...limits.maxBatchSize, field: "batch_size")
        try checkRange(guidanceScale, limits.guidance, field: "guidance")
        try checkRange(guidanceRescale, 0...1, field: "guidance_rescale")
        for (value, field) in [(width, "width"), (height, "height")] {
            if let value { try checkRange(value, 1...limits.maxSide, field: field) }
        }
        if let width, let height, width * height > limits.maxPixels {
            throw GenerationRequestError(field: "width", "× height is \(width)×\(height) = \(width * height) pixels, more than the \(limits.maxPixels) allowed")
        }
        try validateImageToImage(limits: limits)
    }

    /// The batches that make `count` images: batch k holds up to `batchSize`
    /// images drawn from one generator seeded with `seed + k`, so a request of
    /// up to `batchSize` images is exactly diffusers' `num_images_per_prompt`.
    public var batches: [GenerationConfiguration] {
        stride(from: 0, to: count, by: batchSize).enumerated().map { k, start in
            var batch = self
            batch.count = min(batchSize, count - start)
            batch.seed = seed &+ UInt64(k)
            return batch
        }
    }
}
