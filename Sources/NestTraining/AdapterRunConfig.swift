import Foundation
import NestModels
import NestPersonalization

/// `nest train adapter --config FILE.json`:
///
/// ```json
/// { "model": "models/base",                 // diffusers folder with image_encoder/
///   "data": "data/train.jsonl",             // manifest (see TrainingManifest)
///   "output": "runs/critter",
///   "adapter": { "placeholder_token": "<critter>", "class_word": "critter",
///                "resampler": { "width": 256, "output_dim": 256, "depth": 2, "heads": 4,
///                               "head_dim": 64, "queries": 16, "ff_mult": 4 } },
///   "training": { "steps": 2000, "batch_size": 4, "learning_rate": 1e-4, ... },
///   "checkpoint_every": 200, "log_every": 10, "sample_every": 500, "bad_records": "skip" }
/// ```
/// Relative paths are relative to the config file. The run writes
/// `checkpoint.safetensors` (resumable), `log.jsonl` (one line per logged
/// step), `samples/step-N.png`, and at the end `adapter.json` + `adapter.safetensors`.
/// Every key is checked: an unknown or misspelled one is refused by name
/// (with the nearest known key), at every level, and every value must lie in
/// its range (`AdapterRunConfig.load`, before any model is read).
public struct AdapterRunConfig: Codable, CheckedConfig {
    public struct AdapterSpec: Codable {
        public var placeholderToken: String
        public var classWord: String
        public var resampler: ResamplerSpec
        public var featureLayer: Int?
        /// nested (default), ip-adapter or single-token: the baselines train on the same encoder.
        public var kind: AdapterConfig.Kind?
        /// Train a copy of the model's image encoder with the adapter (saved in
        /// the adapter file). For a base whose CLIP never learned what tells
        /// individuals apart, as the miniature world's (its captions name no traits).
        public var trainImageEncoder: Bool?
        /// Nested adapters: "replace" (default, the paper's form) or "add" — v* added to the
        /// token's text value, its projection started at zero so training starts from the base model.
        public var nestedValue: AdapterConfig.NestedValue?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case placeholderToken = "placeholder_token", classWord = "class_word", resampler, featureLayer = "feature_layer", kind
            case trainImageEncoder = "train_image_encoder", nestedValue = "nested_value"
        }
    }

    /// The resampler's shape; its input and output widths follow from the model.
    public struct ResamplerSpec: Codable {
        public var width: Int
        public var outputDim: Int?
        public var depth: Int
        public var heads: Int
        public var headDim: Int?
        public var queries: Int
        public var ffMult: Int?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case width, outputDim = "output_dim", depth, heads, headDim = "head_dim", queries, ffMult = "ff_mult"
        }
    }

    public var model: String
    public var data: String
    public var output: String
    public var adapter: AdapterSpec
    public var training: AdapterTrainingOptions
    public var checkpointEvery: Int?
    public var logEvery: Int?
    public var sampleEvery: Int?
    public var badRecords: BadRecordPolicy?
    /// At every checkpoint, the loss with the adapter and with the base model
    /// alone over this many fixed batches (the data's first records, the same
    /// noise, timesteps and dropout each time), logged as "validation_loss" and
    /// "validation_base_loss": the training loss at batch 8 is mostly the noise
    /// draw, so only a fixed set shows whether the adapter still improves.
    public var validationBatches: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, data, output, adapter, training, checkpointEvery = "checkpoint_every", logEvery = "log_every"
        case sampleEvery = "sample_every", badRecords = "bad_records", validationBatches = "validation_batches"
    }
}


extension AdapterRunConfig {
    /// Reads and checks a run config, everything that does not need the model:
    /// unknown keys, types, ranges. One-line errors naming the key and value.
    public static func load(from url: URL) throws -> AdapterRunConfig {
        try loadTrainingConfig(AdapterRunConfig.self, from: url)
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        data = try c.decode(String.self, forKey: .data)
        output = try c.decode(String.self, forKey: .output)
        adapter = try c.decode(AdapterSpec.self, forKey: .adapter)
        training = try c.decodeIfPresent(AdapterTrainingOptions.self, forKey: .training) ?? AdapterTrainingOptions()
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery)
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery)
        sampleEvery = try c.decodeIfPresent(Int.self, forKey: .sampleEvery)
        badRecords = try c.decodeIfPresent(BadRecordPolicy.self, forKey: .badRecords)
        validationBatches = try c.decodeIfPresent(Int.self, forKey: .validationBatches)
    }

    public func validate() throws {
        let check = ConfigCheck()
        for (key, value) in [("model", model), ("data", data), ("output", output)] { try check.text(key, value) }
        for (key, value) in [("checkpoint_every", checkpointEvery), ("log_every", logEvery), ("sample_every", sampleEvery),
                             ("validation_batches", validationBatches)] {
            try check.int(key, value, 1...Int.max)
        }
        try adapter.validate()
        try training.validate()
    }
}

extension AdapterRunConfig.AdapterSpec {
    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        placeholderToken = try c.decode(String.self, forKey: .placeholderToken)
        classWord = try c.decode(String.self, forKey: .classWord)
        resampler = try c.decode(AdapterRunConfig.ResamplerSpec.self, forKey: .resampler)
        featureLayer = try c.decodeIfPresent(Int.self, forKey: .featureLayer)
        kind = try c.decodeIfPresent(AdapterConfig.Kind.self, forKey: .kind)
        trainImageEncoder = try c.decodeIfPresent(Bool.self, forKey: .trainImageEncoder)
        nestedValue = try c.decodeIfPresent(AdapterConfig.NestedValue.self, forKey: .nestedValue)
    }

    func validate() throws {
        let check = ConfigCheck(section: "adapter")
        try check.text("placeholder_token", placeholderToken)
        try check.text("class_word", classWord)
        // Counted from the end when negative, as Python indexes; the model's depth bounds it.
        try check.int("feature_layer", featureLayer, -1024...1024)
        try AdapterConfig.NestedValue.check(nestedValue, kind: kind ?? .nested, key: "adapter.nested_value")
        try resampler.validate()
    }
}

extension AdapterRunConfig.ResamplerSpec {
    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        width = try c.decode(Int.self, forKey: .width)
        outputDim = try c.decodeIfPresent(Int.self, forKey: .outputDim)
        depth = try c.decode(Int.self, forKey: .depth)
        heads = try c.decode(Int.self, forKey: .heads)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        queries = try c.decode(Int.self, forKey: .queries)
        ffMult = try c.decodeIfPresent(Int.self, forKey: .ffMult)
    }

    /// Bounds well past any real encoder's, so a typo cannot ask for terabytes.
    func validate() throws {
        let check = ConfigCheck(section: "adapter.resampler")
        try check.int("width", width, 1...16384)
        try check.int("output_dim", outputDim, 1...16384)
        try check.int("depth", depth, 1...64)
        try check.int("heads", heads, 1...256)
        try check.int("head_dim", headDim, 1...1024)
        try check.int("queries", queries, 1...1024)
        try check.int("ff_mult", ffMult, 1...64)
    }
}
