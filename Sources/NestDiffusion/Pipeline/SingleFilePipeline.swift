import Foundation
import NestEngine
import NestIO
import NestModels

extension StableDiffusionPipeline {
    /// Whether `url` names a single-file checkpoint (a `.safetensors` file) rather than a diffusers folder.
    public static func isSingleFile(_ url: URL) -> Bool {
        var isFolder: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) && !isFolder.boolValue
            && url.pathExtension.lowercased() == "safetensors"
    }

    /// Loads a model given as a diffusers folder, or as a single file with the folder whose configs it uses.
    /// Either way the weights are read in `precision` straight from the files.
    public static func load(model: URL, config: URL?, variant: String? = nil, precision: WeightPrecision = .float32,
                            progress: (@Sendable (PipelineLoadProgress) -> Void)? = nil) throws -> StableDiffusionPipeline {
        if isSingleFile(model) {
            if let variant { throw ModelConfigError("\(model.path): a single file has no weight variants (got \(variant))") }
            return try load(singleFile: model, config: config, precision: precision)
        }
        _ = try configFolder(model: model, config: config)
        return try load(folder: model, variant: variant, precision: precision, progress: progress)
    }

    /// The diffusers folder whose configs a model uses: a model folder's own, or the `config`
    /// folder a single file needs (recognizing the file's family first, for the error message).
    public static func configFolder(model: URL, config: URL?) throws -> URL {
        guard isSingleFile(model) else {
            if let config {
                throw ModelConfigError("\(config.path): a config folder is for single-file checkpoints; \(model.path) is a model folder with its own")
            }
            return model
        }
        if let config { return config }
        let family = try SingleFileCheckpoint(path: model.path).family
        throw noConfigFolder(model, family)
    }

    static func noConfigFolder(_ url: URL, _ family: CheckpointFamily) -> ModelConfigError {
        ModelConfigError("\(url.path): a single-file \(family.rawValue) checkpoint holds no tokenizer or "
                         + "scheduler config; name a diffusers folder of the same family whose configs and "
                         + "tokenizers to use (nest generate --config DIR; its weights are not read)")
    }

    /// Loads a single-file checkpoint (SD 1.x, 2.x or SDXL in the original key layout).
    ///
    /// A single file holds weights only: the models' configs, the tokenizers and the
    /// scheduler config come from `config`, a diffusers folder of the same family
    /// (its weights are not read). The whole file is checked against those configs
    /// before any model is built (see `SingleFileCheckpoint.plan`); `precision` keeps the
    /// large weights narrow straight from the file, as for a folder.
    public static func load(singleFile url: URL, config configURL: URL?,
                            precision: WeightPrecision = .float32) throws -> StableDiffusionPipeline {
        let checkpoint = try SingleFileCheckpoint(path: url.path)
        guard let configURL else { throw noConfigFolder(url, checkpoint.family) }
        let folder = try ModelFolder(url: configURL)
        let configs = try singleFileConfigs(checkpoint, folder: folder)
        // Everything small is read before the weights, so a broken folder fails fast.
        let tokenizers = try ["tokenizer", "tokenizer_2"].prefix(configs.textEncoders.count).map {
            try CLIPTokenizer.load(folder: try folder.component($0))
        }
        let schedulerConfig = try SchedulerConfig.load(
            from: try folder.component("scheduler").appendingPathComponent("scheduler_config.json"))
        let models = try checkpoint.load(configs, precision: precision)
        let prompts = try PromptEncoder(tokenizers: tokenizers, encoders: models.textEncoders)
        return StableDiffusionPipeline(folder: folder, prompts: prompts, unet: models.unet, vae: models.vae,
                                       schedulerConfig: schedulerConfig,
                                       forceZerosForEmptyPrompt: try forceZerosForEmptyPrompt(folder, isXL: prompts.isXL))
    }

    /// The configs of a diffusers folder for the models of a single file, checked to be of its family.
    public static func singleFileConfigs(_ checkpoint: SingleFileCheckpoint, folder: ModelFolder) throws -> SingleFileCheckpoint.Configs {
        let textNames = ["text_encoder", "text_encoder_2"].filter(folder.has)
        guard textNames.count == checkpoint.family.textEncoderTables.count else {
            throw ModelConfigError("\(checkpoint.path) is an \(checkpoint.family.rawValue) checkpoint with "
                                   + "\(checkpoint.family.textEncoderTables.count) text encoder(s), but \(folder.url.path) "
                                   + "describes a pipeline with \(textNames.count)")
        }
        return SingleFileCheckpoint.Configs(
            unet: try UNet2DConditionConfig.load(from: try folder.component("unet").appendingPathComponent("config.json")),
            vae: try decodeConfig(AutoencoderKLConfig.self, from: try folder.component("vae").appendingPathComponent("config.json")),
            textEncoders: try textNames.map {
                try decodeConfig(CLIPTextConfig.self, from: try folder.component($0).appendingPathComponent("config.json"))
            })
    }

    /// SDXL pipelines' `force_zeros_for_empty_prompt` (model_index.json), on by default for SDXL.
    static func forceZerosForEmptyPrompt(_ folder: ModelFolder, isXL: Bool) throws -> Bool {
        let index = try JSONSerialization.jsonObject(with: readConfigFile(folder.url.appendingPathComponent("model_index.json")))
        return ((index as? [String: Any])?["force_zeros_for_empty_prompt"] as? Bool) ?? isXL
    }
}
