import Foundation
import NestEngine

/// A LoRA file and the scale to apply it at.
public struct LoRAChoice: Equatable, Sendable {
    public var path: String
    public var scale: Float

    public init(path: String, scale: Float = 1) { self.path = path; self.scale = scale }

    /// `FILE[:SCALE]`: the scale follows the last colon when it is a number and the whole
    /// argument is not itself a file.
    public init(argument: String) throws {
        if !FileManager.default.fileExists(atPath: argument), let colon = argument.lastIndex(of: ":") {
            let tail = argument[argument.index(after: colon)...]
            guard let scale = Float(tail), scale.isFinite else { throw LoRAError("--lora \(argument): the scale after ':' must be a number") }
            self.init(path: String(argument[..<colon]), scale: scale)
        } else {
            self.init(path: argument)
        }
    }
}

/// A textual-inversion file and, optionally, the token to give it.
public struct EmbeddingChoice: Equatable, Sendable {
    public var path: String
    public var token: String?

    public init(path: String, token: String? = nil) { self.path = path; self.token = token }

    /// `FILE[:TOKEN]`: the token follows the last colon unless the whole argument is a file.
    public init(argument: String) {
        if !FileManager.default.fileExists(atPath: argument), let colon = argument.lastIndex(of: ":") {
            self.init(path: String(argument[..<colon]), token: String(argument[argument.index(after: colon)...]))
        } else {
            self.init(path: argument)
        }
    }
}

/// The LoRAs and textual inversions a pipeline carries for the current request. A request
/// with other choices first takes the previous ones off, so a request without a LoRA gets
/// the base model's image.
public final class PipelineAdditions {
    public let pipeline: StableDiffusionPipeline
    private let attached = AttachedLoRAs()
    public private(set) var loras: [LoRAChoice] = []
    public private(set) var embeddings: [EmbeddingChoice] = []

    public init(pipeline: StableDiffusionPipeline) { self.pipeline = pipeline }

    /// Makes `loras` and `embeddings` the pipeline's additions. On failure none is left applied.
    public func apply(loras: [LoRAChoice], embeddings: [EmbeddingChoice]) throws {
        if loras == self.loras && embeddings == self.embeddings { return }
        removeAll()
        do {
            for choice in loras {
                try attached.attach(path: choice.path, scale: choice.scale, unet: pipeline.unet, textEncoders: pipeline.prompts.encoders)
            }
            for choice in embeddings {
                try TextualInversion(path: choice.path, token: choice.token).add(to: pipeline.prompts, path: choice.path)
            }
        } catch {
            removeAll()
            throw error
        }
        self.loras = loras
        self.embeddings = embeddings
    }

    /// Takes every LoRA and embedding off.
    public func removeAll() {
        attached.detachAll()
        pipeline.prompts.removeEmbeddings()
        loras = []
        embeddings = []
    }
}
