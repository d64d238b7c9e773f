import Foundation
import NestEngine

/// What a UNet run keeps besides its weights: the moving average that
/// sampling and the written model use, and the held-out denoising error.
extension BaseTrainingRun {
    /// The trained weights and, when the run keeps one, their moving average
    /// ("ema." + name): a resume continues both exactly.
    var checkpointTensors: [(path: String, tensor: Tensor)] { optimizer.parameters + (unetTrainer?.ema?.shadows ?? []) }

    /// Runs `body` with the weights sampling uses: the EMA when the run keeps one.
    func withSamplingWeights<T>(_ body: () throws -> T) rethrows -> T {
        guard let trainer = unetTrainer, let ema = trainer.ema else { return try body() }
        return try ema.withAveragedWeights(in: trainer.optimizer.parameters.map(\.tensor), body)
    }

    /// Mean ε-units denoising error over `validation_data`, in batches of the
    /// run's batch size; record k's noise and timestep come from seed k, the
    /// same in every run whatever its batch size. Nil when the run has no
    /// validation records.
    func validationLoss() throws -> Float? {
        guard let trainer = unetTrainer, let validation else { return nil }
        let resolution = config.resolution ?? 64, size = config.batchSize ?? 4
        var total = 0.0
        for start in stride(from: 0, to: validation.samples.count, by: size) {
            let batch = Array(validation.samples[start..<min(start + size, validation.samples.count)])
            let pixels = F.concat(try batch.map { Augmentation.none.apply(try image($0.image), size: resolution, seed: 0) }, axis: 0)
            let seeds = (start..<start + batch.count).map { UInt64($0) &* 0x9E37_79B9 &+ 17 }
            let loss = trainer.heldOutLoss(images: pixels, captions: batch.map(\.caption), seeds: seeds)
            total += Double(loss) * Double(batch.count)
        }
        return Float(total / Double(max(validation.samples.count, 1)))
    }
}
