import Foundation
import NestEngine
import NestModels

/// The training-time noise schedule: betas and ᾱ (alphas_cumprod) per
/// training timestep, in float32 exactly as diffusers computes them with torch.
public struct NoiseSchedule: Sendable {
    public let betas: [Float]
    public let alphasCumprod: [Float]
    public var trainStepCount: Int { betas.count }

    /// `sqrt((1 - ᾱ) / ᾱ)` per training timestep (float32 elementwise, as torch).
    public var sigmas: [Float] { alphasCumprod.map { ((1 - $0) / $0).squareRoot() } }

    /// - Parameter clampsTerminal: with zero-terminal-SNR betas the last ᾱ is
    ///   0; every diffusers class but DDIM then sets it to 2⁻²⁴ so sigmas stay finite.
    init(config: SchedulerConfig, kind: SchedulerKind, clampsTerminal: Bool) throws {
        let count = config.numTrainTimesteps ?? 1000
        guard count >= 2 else { throw unsupported("num_train_timesteps", count, by: kind) }
        let start = config.betaStart ?? 0.0001, end = config.betaEnd ?? 0.02
        var betas: [Float]
        if let trained = config.trainedBetas {
            guard trained.count == count else {
                throw ModelConfigError("scheduler_config.json: trained_betas has \(trained.count) values but num_train_timesteps is \(count)")
            }
            betas = trained.map { Float($0) }
        } else {
            switch config.betaSchedule ?? "linear" {
            case "linear":
                betas = Torch.linspace(Float(start), Float(end), count)
            case "scaled_linear":
                betas = Torch.linspace(Float(start.squareRoot()), Float(end.squareRoot()), count).map { $0 * $0 }
            case "squaredcos_cap_v2":
                betas = NoiseSchedule.cosineBetas(count)
            case let other:
                throw unsupported("beta_schedule", other, by: kind)
            }
        }
        let rescale = config.rescaleBetasZeroSnr ?? false
        if rescale { betas = NoiseSchedule.rescaledToZeroTerminalSNR(betas) }
        var cumprod = Torch.cumprod(betas.map { 1 - $0 })
        if rescale && clampsTerminal { cumprod[count - 1] = 0x1p-24 }
        self.betas = betas
        self.alphasCumprod = cumprod
    }

    /// Nichol & Dhariwal's cosine schedule (`betas_for_alpha_bar`), in float64.
    static func cosineBetas(_ count: Int, maxBeta: Double = 0.999) -> [Float] {
        func alphaBar(_ t: Double) -> Double {
            let c = cos((t + 0.008) / 1.008 * Double.pi / 2)
            return c * c
        }
        return (0..<count).map { i in
            let t1 = Double(i) / Double(count), t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), maxBeta))
        }
    }

    /// Lin et al. (2023): shift and scale sqrt(ᾱ) so the last timestep has
    /// zero signal, then recover betas. float32 throughout, as diffusers.
    static func rescaledToZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        var root = Torch.cumprod(betas.map { 1 - $0 }).map { $0.squareRoot() }
        let first = root[0], last = root[root.count - 1]
        let scale = first / (first - last)
        root = root.map { ($0 - last) * scale }
        let alphaBar = root.map { $0 * $0 }
        return alphaBar.indices.map { i in 1 - (i == 0 ? alphaBar[0] : alphaBar[i] / alphaBar[i - 1]) }
    }

    /// DDPM forward process for training, one timestep per batch element (the
    /// first axis): `sqrt(ᾱ_t)·x + sqrt(1-ᾱ_t)·noise` (diffusers' `add_noise`).
    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        perBatch(original, noise, timesteps) { a, s, x, n in a * x + s * n }
    }

    /// The v-prediction target `sqrt(ᾱ_t)·noise - sqrt(1-ᾱ_t)·x` (diffusers' `get_velocity`).
    public func velocity(sample: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        perBatch(sample, noise, timesteps) { a, s, x, n in a * n - s * x }
    }

    private func perBatch(_ x: Tensor, _ noise: Tensor, _ timesteps: [Int],
                          _ combine: (Float, Float, Float, Float) -> Float) -> Tensor {
        precondition(x.shape == noise.shape, "sample \(x.shape) and noise \(noise.shape) differ")
        precondition(x.rank >= 1 && x.shape[0] == timesteps.count,
                     "\(timesteps.count) timesteps for a batch of \(x.shape.first ?? 0)")
        let out = Tensor(uninitialized: x.shape)
        let per = x.count / max(timesteps.count, 1)
        for (b, t) in timesteps.enumerated() {
            precondition(alphasCumprod.indices.contains(t), "timestep \(t) outside 0..<\(trainStepCount)")
            let a = alphasCumprod[t].squareRoot(), s = (1 - alphasCumprod[t]).squareRoot()
            for i in b * per..<(b + 1) * per { out.data[i] = combine(a, s, x.data[i], noise.data[i]) }
        }
        return out
    }
}
