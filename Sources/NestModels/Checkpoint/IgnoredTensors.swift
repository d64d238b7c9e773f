/// Tensors that original single-file checkpoints carry and that no diffusers model reads,
/// each with the reason it is safe to leave. Anything else a file holds beyond the
/// models' weights is reported by name.
struct IgnoredTensors {
    /// The training noise schedule that LDM checkpoints store as buffers; sampling reads the scheduler config.
    static let schedule: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "lvlb_weights",
    ]

    let family: CheckpointFamily
    let textEncoders: [CLIPTextConfig]

    func reason(_ name: String) -> String? {
        if Self.schedule.contains(name) { return "training noise schedule" }
        if name.hasPrefix("model_ema.") { return "EMA copy of the UNet" }
        if name.hasSuffix(".position_ids") { return "text position ids (implicit here)" }
        if name.hasSuffix(".logit_scale") { return "CLIP logit scale (for image-text matching)" }
        if family == .sd2, let config = textEncoders.first {
            // SD 2 conditions on the penultimate layer of OpenCLIP: its last block and
            // projection are stored but never run.
            if name == "cond_stage_model.model.text_projection" { return "unused OpenCLIP projection" }
            if name.hasPrefix("cond_stage_model.model.transformer.resblocks.\(config.encoder.layers).") {
                return "OpenCLIP block after the layer SD 2 reads"
            }
        }
        return nil
    }
}
