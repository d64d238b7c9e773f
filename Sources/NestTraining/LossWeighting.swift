import NestDiffusion
import NestEngine
import NestIO
import NestModels

/// How each sample's denoising error counts in the UNet's loss.
///
/// `uniform` is plain MSE. `minSNR(gamma)` is the min-SNR-γ weighting of
/// Hang et al. 2023: low-noise timesteps, whose targets are easy and whose
/// gradients otherwise dominate, are capped at signal-to-noise ratio γ. With
/// SNR = ᾱ / (1 − ᾱ) the weight of a sample is min(SNR, γ) / SNR for
/// ε-prediction and min(SNR, γ) / (SNR + 1) for v-prediction (the v target's
/// error is the ε error scaled by SNR + 1), so in ε-units both objectives
/// weigh a timestep by min(SNR, γ).
public enum LossWeighting: Equatable, Sendable {
    case uniform
    case minSNR(gamma: Float)

    /// SNR of each timestep, computed as diffusers' `compute_snr` does in float32:
    /// (√ᾱ / √(1 − ᾱ))².
    public static func signalToNoise(_ schedule: NoiseSchedule, timesteps: [Int]) -> [Float] {
        timesteps.map { t in
            let abar = schedule.alphasCumprod[t]
            let ratio = abar.squareRoot() / (1 - abar).squareRoot()
            return ratio * ratio
        }
    }

    /// The weight of each sample's mean squared error (all 1 for `uniform`).
    public func weights(_ schedule: NoiseSchedule, timesteps: [Int], predictsVelocity: Bool) -> [Float] {
        guard case .minSNR(let gamma) = self else { return timesteps.map { _ in 1 } }
        return Self.signalToNoise(schedule, timesteps: timesteps).map { snr in
            // A zero-terminal-SNR schedule's last step has SNR 0: ε's weight is then its limit, 1.
            if !predictsVelocity && snr == 0 { return 1 }
            return Swift.min(snr, gamma) / (predictsVelocity ? snr + 1 : snr)
        }
    }

    /// The mean over samples of weight × the sample's mean squared error, as
    /// diffusers' train_text_to_image reduces it; `prediction` and `target`
    /// are [B, …] with one timestep per sample.
    public func loss(prediction: Tensor, target: Tensor, schedule: NoiseSchedule, timesteps: [Int],
                     predictsVelocity: Bool) -> Tensor {
        guard self != .uniform else { return F.mseLoss(prediction, target) }
        let perSample = weights(schedule, timesteps: timesteps, predictsVelocity: predictsVelocity)
        precondition(perSample.count == prediction.shape[0], "one timestep per sample")
        let size = prediction.count / perSample.count
        let expanded = Tensor(perSample.flatMap { Array(repeating: $0, count: size) }, shape: prediction.shape)
        // weightedMSELoss divides by the sum of the weights; the min-SNR loss divides by the element count.
        let total = perSample.reduce(0) { $0 + Double($1) } * Double(size)
        // All weights 0 (v-prediction at SNR 0 only): nothing to learn from this batch.
        guard total > 0 else { return F.mseLoss(prediction, target).scaled(0) }
        return F.weightedMSELoss(prediction, target, weights: expanded).scaled(Float(total / Double(prediction.count)))
    }
}

extension LossWeighting {
    /// A run config's `"loss_weighting"` and `"snr_gamma"`, checked: the
    /// weighting must be "uniform" or "min_snr", γ a finite number > 0 given
    /// only with "min_snr" (default 5, the paper's choice).
    public static func configured(_ name: String?, gamma: Float?) throws -> LossWeighting {
        switch name ?? "uniform" {
        case "uniform":
            if let gamma { throw ModelConfigError("snr_gamma (\(gamma)) is for \"loss_weighting\": \"min_snr\", the run's weighting is uniform") }
            return .uniform
        case "min_snr":
            let gamma = gamma ?? 5
            guard gamma.isFinite, gamma > 0 else { throw ModelConfigError("snr_gamma must be a finite number > 0, got \(gamma)") }
            return .minSNR(gamma: gamma)
        case let other:
            throw ModelConfigError("loss_weighting must be \"uniform\" or \"min_snr\", got \"\(Escaped.text(other))\"")
        }
    }
}
