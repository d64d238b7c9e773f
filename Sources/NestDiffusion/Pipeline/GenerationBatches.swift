import NestEngine
import NestIO

/// One finished image of a request, handed out as soon as its batch is decoded.
public struct GeneratedImage {
    /// Position in the whole request, from 0.
    public let index: Int
    /// The seed of the generator this image's batch was drawn from.
    public let seed: UInt64
    public let positionInBatch: Int
    public let batchSize: Int
    public let image: RGBImage
}

/// Generates a request's `count` images batch by batch (`GenerationConfiguration.batches`)
/// and hands each image to `deliver` before the next batch starts, so memory holds one
/// batch whatever the count. `batch` generates one batch (a plain or personalized pipeline);
/// `progress` sees the batch's index with each step and may cancel.
public func generateImages(_ request: GenerationConfiguration,
                           batch: (GenerationConfiguration, _ progress: @escaping (GenerationProgress) -> Bool) throws -> Tensor,
                           progress: ((_ batch: Int, GenerationProgress) -> Bool)? = nil,
                           deliver: (GeneratedImage) throws -> Void) throws {
    try request.validate()
    var index = 0
    for (k, config) in request.batches.enumerated() {
        let images = try StableDiffusionPipeline.images(try batch(config) { progress?(k, $0) ?? true })
        for (j, image) in images.enumerated() {
            try deliver(GeneratedImage(index: index, seed: config.seed, positionInBatch: j, batchSize: config.count, image: image))
            index += 1
        }
    }
}
