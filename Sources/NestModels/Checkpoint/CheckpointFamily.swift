import NestEngine

/// The model families a single-file checkpoint can hold, recognized from its tensor names.
public enum CheckpointFamily: String, Sendable, CaseIterable {
    case sd1 = "SD 1.x"
    case sd2 = "SD 2.x"
    case sdxl = "SDXL"

    static let unetPrefix = "model.diffusion_model."
    static let vaePrefix = "first_stage_model."

    /// Key tables of the text encoders, in diffusers' order (`text_encoder`, `text_encoder_2`).
    public var textEncoderTables: [KeyTable] {
        switch self {
        case .sd1: return [OriginalLayout.clip(prefix: "cond_stage_model.transformer.")]
        case .sd2: return [OriginalLayout.openCLIP(prefix: "cond_stage_model.model.")]
        case .sdxl: return [OriginalLayout.clip(prefix: "conditioner.embedders.0.transformer."),
                            OriginalLayout.openCLIP(prefix: "conditioner.embedders.1.model.")]
        }
    }

    /// SDXL's second encoder is CLIPTextModelWithProjection: its pooled output is projected.
    public func textEncoderHasProjection(_ index: Int) -> Bool { self == .sdxl && index == 1 }

    /// The family whose text-encoder tensors the file holds; an error saying what the file is otherwise.
    /// A file must also hold a UNet and a VAE in the original layout (checked by the caller).
    static func recognize(_ names: [String]) throws -> CheckpointFamily {
        func has(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }
        if has("conditioner.embedders.1.model.") && has("conditioner.embedders.0.transformer.") { return .sdxl }
        if has("conditioner.embedders.0.model.") {
            throw ModelConfigError("an SDXL refiner (one OpenCLIP encoder at conditioner.embedders.0.model.*), which is not supported")
        }
        if has("cond_stage_model.model.") { return .sd2 }
        if has("cond_stage_model.transformer.") { return .sd1 }
        if has("down_blocks.") || has("encoder.down_blocks.") || has("text_model.") {
            throw ModelConfigError("a single diffusers component (diffusers key names), not a whole single-file checkpoint; "
                                   + "use the diffusers folder it belongs to")
        }
        throw ModelConfigError("no text encoder in a known layout (cond_stage_model.transformer.*, cond_stage_model.model.* "
                               + "or conditioner.embedders.0/1.*): not a Stable Diffusion 1.x, 2.x or SDXL single-file checkpoint")
    }
}

