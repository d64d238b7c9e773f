/// The noise schedule and training objective a world model folder is written
/// with (its `scheduler/scheduler_config.json`, which training and sampling
/// both read).
public enum WorldNoiseSchedule: String, CaseIterable, Sendable {
    /// Stable Diffusion 1.x's: ε-prediction on the scaled-linear betas,
    /// "leading" timesteps. The first and second editions were trained on it.
    /// Its last timestep keeps √ᾱ ≈ 0.07 of the picture, so training always
    /// shows the UNet a trace of the truth's layout and colours, while sampling
    /// starts from noise that holds none: the world's UNets learned to take the
    /// subject from that trace, not from the words (docs/world.md).
    case sd
    /// Lin et al. (2024): the betas rescaled to zero signal at the last
    /// timestep, v-prediction (ε is undefined there) and "trailing" timesteps
    /// so sampling starts at that last timestep. At the same 1,200 training
    /// steps it took the world's prompt fidelity from 0.52 to 0.71.
    case zeroTerminalSNR = "zero-snr"

    /// The diffusers scheduler config written for this schedule.
    public var schedulerConfig: [String: Any] {
        var config: [String: Any] = [
            "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
            "timestep_spacing": "leading", "steps_offset": 1, "interpolation_type": "linear",
            "use_karras_sigmas": false,
            // As SD 1.5's own config has them: a DDIM loaded from this
            // config must not clamp x̂₀ to ±1 (latents are wider than that).
            "clip_sample": false, "set_alpha_to_one": false]
        if self == .zeroTerminalSNR {
            config["prediction_type"] = "v_prediction"
            config["rescale_betas_zero_snr"] = true
            config["timestep_spacing"] = "trailing"
        }
        return config
    }
}
