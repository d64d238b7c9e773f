import Foundation
import NestDiffusion

/// The miniature world's model folder before training: diffusers' layout
/// (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `image_encoder/`,
/// `tokenizer/`, `scheduler/`, `feature_extractor/`) with configs only, at
/// the world's small sizes. The trainers fill in the weights stage by stage,
/// and the finished folder loads like any Stable Diffusion 1.x checkpoint.
public enum WorldModel {
    /// Text positions: the longest world caption is about 26 tokens, 40 with
    /// every trait named (`TraitDetail.full`).
    public static func maxTokens(_ detail: TraitDetail) -> Int { detail == .full ? 48 : 32 }
    /// Text and image embedding width (and the UNet's cross_attention_dim).
    public static let width = 128

    /// Writes the skeleton; `folder` must not exist yet. `settings` other than
    /// the first edition's are recorded in `world.json`.
    public static func writeSkeleton(to folder: URL, settings: WorldSettings = .firstEdition,
                                     schedule: WorldNoiseSchedule = .zeroTerminalSNR, unet: WorldUNetShape = .standard) throws {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: folder.path) else {
            throw WorldError("\(folder.path) already exists; choose a new folder (nothing was overwritten)")
        }
        func write(_ object: [String: Any], _ path: String) throws {
            let url = folder.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            // JSONSerialization writes 1.0 as `1`; transformers 5 validates its
            // config fields strictly and rejects an int where it wants a float.
            var text = String(decoding: try JSONSerialization.data(withJSONObject: object.mapValues(Self.markWholeFloats),
                                                                   options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
            text = text.replacingOccurrences(of: #""\#(Self.floatMark)([-0-9]+)""#, with: "$1.0", options: .regularExpression)
            try Data(text.utf8).write(to: url, options: .atomic)
        }
        // A glance-word world keeps the vocabulary and text positions it always
        // had, so text encoders trained for it (the committed stages) still fit.
        let maxTokens = maxTokens(settings.traitWords)
        try CLIPTokenizer.writeVocabulary(spelling: captionCorpus(settings.traitWords), maxLength: maxTokens,
                                          to: folder.appendingPathComponent("tokenizer"))
        let vocabulary = try JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.appendingPathComponent("tokenizer/vocab.json"))) as! [String: Int]
        let eos = vocabulary["<|endoftext|>"]!

        try write(["_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                   "feature_extractor": ["transformers", "CLIPImageProcessor"],
                   "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                   "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                   "text_encoder": ["transformers", "CLIPTextModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"],
                   "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"]], "model_index.json")
        // Factor-4 autoencoder: 64×64 RGB ↔ 16×16×4 latents.
        try write(["_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 64, 64],
                   "down_block_types": Array(repeating: "DownEncoderBlock2D", count: 3),
                   "up_block_types": Array(repeating: "UpDecoderBlock2D", count: 3),
                   "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
                   "norm_num_groups": 16, "sample_size": 64, "scaling_factor": 1.0, "force_upcast": false,
                   "mid_block_add_attention": true, "use_quant_conv": true, "use_post_quant_conv": true], "vae/config.json")
        try write(["_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": WorldUNetShape.heads,
                   "block_out_channels": unet.channels, "cross_attention_dim": width,
                   "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                   "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                   "mid_block_type": "UNetMidBlock2DCrossAttn", "in_channels": 4, "out_channels": 4,
                   "layers_per_block": unet.layersPerBlock, "norm_num_groups": WorldUNetShape.groups, "norm_eps": 1e-5, "sample_size": 16,
                   "flip_sin_to_cos": true, "freq_shift": 0, "downsample_padding": 1, "center_input_sample": false,
                   "transformer_layers_per_block": 1, "use_linear_projection": true, "upcast_attention": false,
                   "only_cross_attention": false, "dual_cross_attention": false, "time_embedding_type": "positional",
                   "conv_in_kernel": 3, "conv_out_kernel": 3, "mid_block_scale_factor": 1,
                   "resnet_time_scale_shift": "default"], "unet/config.json")
        let text: [String: Any] = [
            "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": "quick_gelu",
            "hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": 4, "num_hidden_layers": 4,
            "max_position_embeddings": maxTokens, "vocab_size": vocabulary.count, "layer_norm_eps": 1e-5,
            "projection_dim": width, "bos_token_id": vocabulary["<|startoftext|>"]!, "eos_token_id": eos,
            "pad_token_id": eos, "attention_dropout": 0.0, "initializer_factor": 1.0, "initializer_range": 0.02]
        try write(text, "text_encoder/config.json")
        try write(["architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
                   "hidden_act": "quick_gelu", "hidden_size": width, "intermediate_size": 4 * width,
                   "num_attention_heads": 4, "num_hidden_layers": 4, "image_size": 64, "patch_size": 8,
                   "num_channels": 3, "projection_dim": width, "layer_norm_eps": 1e-5, "attention_dropout": 0.0,
                   "initializer_factor": 1.0, "initializer_range": 0.02], "image_encoder/config.json")
        try write(["crop_size": ["height": 64, "width": 64], "size": ["shortest_edge": 64], "do_center_crop": true,
                   "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "image_processor_type": "CLIPImageProcessor", "resample": 3, "rescale_factor": 1.0 / 255],
                  "feature_extractor/preprocessor_config.json")
        try write(schedule.schedulerConfig, "scheduler/scheduler_config.json")
        if settings != .firstEdition { try settings.write(model: folder) }
    }

    static let floatMark = "__whole_float__"

    /// Whole-number Doubles become marked strings (restored as `N.0` after
    /// serialization); everything else is kept, arrays and objects recursively.
    static func markWholeFloats(_ value: Any) -> Any {
        switch value {
        case let d as Double where d.rounded() == d && abs(d) < 1e15 && !(value is Int) && !(value is Bool): return "\(floatMark)\(Int(d))"
        case let array as [Any]: return array.map(markWholeFloats)
        case let object as [String: Any]: return object.mapValues(markWholeFloats)
        default: return value
        }
    }

    /// Captions of many random scenes of both domains and every framing, with
    /// class words and trait words: the words the tokenizer must spell whole.
    /// Each block draws from its own stream, so the words of the earlier ones
    /// keep their order; a block added later (near framings; every trait named,
    /// for worlds described in full) grows the vocabulary, and a text encoder
    /// trained on the old one must be trained again.
    static func captionCorpus(_ detail: TraitDetail) -> [String] {
        captions(stream: "vocabulary", count: 3000, framings: [.scene], detail: .glance)
            + captions(stream: "vocabulary.framings", count: 1000, framings: Framing.near, detail: .glance)
            + (detail == .full ? captions(stream: "vocabulary.traits", count: 1000, framings: Framing.allCases, detail: .full) : [])
    }

    /// `count` described captions per domain of scenes drawn from `stream`.
    static func captions(stream: String, count: Int, framings: [Framing], detail: TraitDetail) -> [String] {
        var rng = WorldRandom(seed: 7, stream: stream)
        var texts: [String] = []
        for _ in 0..<count {
            for domain in Domain.allCases {
                let seed = rng.next()
                let context = Context.random(seed: seed, framings: framings)
                let scene = Scene(identity: Identity.random(domain: domain, seed: seed), context: context, seed: seed)
                texts.append(WorldCaption.caption(for: scene, describe: detail, seed: seed))
            }
        }
        return texts
    }
}

/// A miniature-world error with a one-line message.
public struct WorldError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
