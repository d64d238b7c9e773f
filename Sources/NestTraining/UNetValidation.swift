import NestDiffusion
import NestEngine
import NestModels

extension UNetTrainer {
    /// The UNet's denoising error in ε-units on `images` [B, H, W, 3] in
    /// [-1, 1]: image i's posterior mean is noised with noise and a timestep
    /// drawn from `seeds[i]` alone, so every run, whatever its seed,
    /// objective or batch size, is measured on the same noisy latents. A
    /// v-prediction is turned into its ε (ε = √ᾱ v + √(1 − ᾱ) x_t) so the
    /// objectives compare; plain MSE, no weighting, no caption dropout. With
    /// `averaged` the EMA weights (what sampling uses) are measured, when the
    /// run keeps them.
    public func heldOutLoss(images: Tensor, captions: [String], seeds: [UInt64], averaged: Bool = true) -> Float {
        let b = images.shape[0]
        precondition(captions.count == b && seeds.count == b, "heldOutLoss: \(captions.count) captions and \(seeds.count) seeds for \(b) images")
        let timesteps = seeds.map { seed in
            var rng = SeededRandom(seed: seed)
            return rng.nextInt(below: noise.trainStepCount)
        }
        return Autograd.noGrad {
            let latents = vae.scaleLatents(vae.encode(images).mean)
            let one = [1] + Array(latents.shape.dropFirst())
            let eps = F.concat(seeds.map { Tensor.randn(one, seed: $0 &+ 1) }, axis: 0)
            let noisy = noise.addNoise(original: latents, noise: eps, timesteps: timesteps)
            let encoded = prompts.encode(captions)
            var added: (textEmbeds: Tensor, timeIds: Tensor)? = nil
            if let pooled = encoded.pooled {
                let h = Float(images.shape[1]), w = Float(images.shape[2])
                added = (pooled, Tensor((0..<b).flatMap { _ in [h, w, 0, 0, h, w] }, shape: [b, 6]))
            }
            func predict() -> Tensor {
                unet(sample: noisy, timestep: timesteps.map(Float.init), encoderHiddenStates: encoded.hidden, added: added)
            }
            let weights = optimizer.parameters.map(\.tensor)
            let prediction = averaged ? ema?.withAveragedWeights(in: weights, predict) ?? predict() : predict()
            let predictedNoise = predictsVelocity ? noiseFromVelocity(prediction, noisy: noisy, timesteps: timesteps) : prediction
            return F.mseLoss(predictedNoise, eps).item
        }
    }

    /// ε = √ᾱ v + √(1 − ᾱ) x_t, per sample's timestep.
    func noiseFromVelocity(_ v: Tensor, noisy: Tensor, timesteps: [Int]) -> Tensor {
        let size = v.count / timesteps.count
        let out = Tensor(uninitialized: v.shape)
        for (i, t) in timesteps.enumerated() {
            let abar = noise.alphasCumprod[t]
            let a = abar.squareRoot(), s = (1 - abar).squareRoot()
            for j in (i * size)..<((i + 1) * size) { out.data[j] = a * v.data[j] + s * noisy.data[j] }
        }
        return out
    }
}
