import Foundation
import NestEngine
import NestIO
@testable import NestModels
import Testing

/// CLIP text and image encoders and image preprocessing against transformers 5.24
/// (fixtures from tools/model_fixtures/clip.py).
@Suite struct CLIPTests {
    static let tolerance: Float = 1e-4

    static let textEncoders: [(String, String)] = [
        ("sd1", "text_encoder"), ("sd2", "text_encoder"), ("sdxl", "text_encoder"), ("sdxl", "text_encoder_2"),
    ]

    /// Token ids stored as floats in the reference file → rows of Int.
    static func ids(_ refs: SafeTensorsFile, _ name: String) throws -> [[Int]] {
        let t = try refs.tensor("\(name).input_ids")
        let (rows, cols) = (t.shape[0], t.shape[1])
        return (0..<rows).map { r in (0..<cols).map { Int(t.data[r * cols + $0]) } }
    }

    static func check(_ name: String, _ actual: Tensor, _ expected: Tensor) -> Float {
        #expect(actual.shape == expected.shape, "\(name): shape \(actual.shape) vs \(expected.shape)")
        guard actual.shape == expected.shape else { return .infinity }
        let e = relativeError(actual, expected)
        #expect(e <= tolerance, "\(name): relative error \(e)")
        return e
    }

    @Test(arguments: textEncoders)
    func textEncoderMatchesTransformers(flavour: String, folder: String) throws {
        let model = try CLIPTextModel.load(folder: ModelFixtures.component(flavour, folder))
        let refs = try ModelFixtures.references(flavour, "clip")
        let out = model.forward(ids: try Self.ids(refs, folder))
        var worst: Float = 0
        worst = max(worst, Self.check("last_hidden_state", out.lastHiddenState, try refs.tensor("\(folder).last_hidden_state")))
        #expect(out.hiddenStates.count == model.config.encoder.layers + 1)
        for (i, state) in out.hiddenStates.enumerated() {
            worst = max(worst, Self.check("hidden_states.\(i)", state, try refs.tensor("\(folder).hidden_states.\(i)")))
        }
        worst = max(worst, Self.check("pooled", out.pooled, try refs.tensor("\(folder).pooled")))
        let hasProjection = refs.tensors["\(folder).text_embeds"] != nil
        #expect((out.textEmbeds != nil) == hasProjection)
        if let embeds = out.textEmbeds {
            worst = max(worst, Self.check("text_embeds", embeds, try refs.tensor("\(folder).text_embeds")))
        }
        print("CLIP \(flavour)/\(folder): max relative error \(worst)")
    }

    /// The fixtures' ids are built so the two pooling rules disagree: legacy rows
    /// (eos_token_id 2) repeat the largest id as padding, the others hold ids above eos.
    @Test func poolingFollowsTransformersRules() throws {
        let legacy = try CLIPTextModel.load(folder: ModelFixtures.component("sd1", "text_encoder"))
        #expect(legacy.config.eosTokenId == 2)
        let legacyIds = try Self.ids(try ModelFixtures.references("sd1", "clip"), "text_encoder")
        #expect(legacy.text_model.eosPositions(legacyIds) == [6, 13])

        let modern = try CLIPTextModel.load(folder: ModelFixtures.component("sdxl", "text_encoder_2"))
        #expect(modern.config.eosTokenId == 500)
        let modernIds = try Self.ids(try ModelFixtures.references("sdxl", "clip"), "text_encoder_2")
        let positions = modern.text_model.eosPositions(modernIds)
        #expect(positions == modernIds.map { $0.firstIndex(of: 500)! })
        #expect(positions != legacy.text_model.eosPositions(modernIds))
        #expect(modern.text_model.eosPositions([[5, 6, 7]]) == [0])  // no eos: position 0, as argmax of zeros
    }

    /// Running only the first N layers gives the same states, and pooling reads layer N (clip_skip).
    @Test func truncatedTextEncoder() throws {
        let model = try CLIPTextModel.load(folder: ModelFixtures.component("sdxl", "text_encoder_2"))
        let refs = try ModelFixtures.references("sdxl", "clip")
        let n = model.config.encoder.layers - 1
        let out = model.forward(ids: try Self.ids(refs, "text_encoder_2"), layers: n)
        #expect(out.hiddenStates.count == n + 1)
        let penultimate = try refs.tensor("text_encoder_2.hidden_states.\(n)")
        _ = Self.check("penultimate", out.hiddenStates[n], penultimate)
        _ = Self.check("normed penultimate", out.lastHiddenState, model.text_model.final_layer_norm(penultimate))
    }

    @Test(arguments: ["sd1", "sdxl"])
    func imageEncoderMatchesTransformers(flavour: String) throws {
        let model = try CLIPVisionModel.load(folder: ModelFixtures.component(flavour, "image_encoder"))
        #expect(model.visual_projection != nil)
        let refs = try ModelFixtures.references(flavour, "clip")
        let out = model.forward(pixels: try refs.reference("image_encoder.pixel_values", nchw: true))
        var worst: Float = 0
        worst = max(worst, Self.check("last_hidden_state", out.lastHiddenState, try refs.tensor("image_encoder.last_hidden_state")))
        #expect(out.hiddenStates.count == model.config.encoder.layers + 1)
        for (i, state) in out.hiddenStates.enumerated() {
            worst = max(worst, Self.check("hidden_states.\(i)", state, try refs.tensor("image_encoder.hidden_states.\(i)")))
        }
        worst = max(worst, Self.check("pooled", out.pooled, try refs.tensor("image_encoder.pooled")))
        worst = max(worst, Self.check("image_embeds", out.imageEmbeds!, try refs.tensor("image_encoder.image_embeds")))
        print("CLIP \(flavour)/image_encoder: max relative error \(worst)")
    }
}

// MARK: - Image preprocessing

extension CLIPTests {
    /// The reference image (HWC floats 0…255 in the file) as 8-bit RGB.
    static func syntheticImage(_ refs: SafeTensorsFile) throws -> RGBImage {
        let t = try refs.tensor("preprocess.image")
        return try RGBImage(width: t.shape[1], height: t.shape[0], pixels: t.array.map { UInt8($0) })
    }

    /// Max |a − b| over all values (pixel values are normalized, about −2…2).
    static func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.array, b.array).map { abs($0 - $1) }.max() ?? 0
    }

    /// transformers' PIL-backed processor, reproduced including Pillow's fixed-point resampling:
    /// the fixture's config (downscale 50×37 → shortest edge, square crop) and three variants
    /// (bicubic upscale with a non-square crop, bilinear to an exact size, a crop that pads).
    @Test(arguments: ["sd1", "sdxl"])
    func preprocessingMatchesTransformers(flavour: String) throws {
        let refs = try ModelFixtures.references(flavour, "clip")
        let image = try Self.syntheticImage(refs)
        let processor = try CLIPImageProcessor.load(folder: ModelFixtures.component(flavour, "feature_extractor"))
        var cases: [(String, CLIPImageProcessor)] = [("pixel_values", processor)]
        var upscale = CLIPImageProcessorConfig()
        upscale.size = .shortestEdge(61)
        upscale.cropSize = (56, 48)
        cases.append(("upscale_bicubic", CLIPImageProcessor(config: upscale)))
        var bilinear = CLIPImageProcessorConfig()
        bilinear.size = .exact(height: 29, width: 23)
        bilinear.cropSize = (20, 20)
        bilinear.resample = .bilinear
        cases.append(("square_bilinear", CLIPImageProcessor(config: bilinear)))
        var pads = CLIPImageProcessorConfig()
        pads.size = .shortestEdge(20)
        pads.cropSize = (24, 30)
        cases.append(("crop_pads", CLIPImageProcessor(config: pads)))
        for (name, processor) in cases {
            let expected = try refs.reference("preprocess.\(name)", nchw: true)
            let actual = processor(image)
            #expect(actual.shape == expected.shape, "\(name): \(actual.shape) vs \(expected.shape)")
            guard actual.shape == expected.shape else { continue }
            let diff = Self.maxAbsDifference(actual, expected)
            print("CLIP preprocessing \(flavour)/\(name): max abs difference \(diff)")
            #expect(diff <= 1e-6, "\(name): max abs difference \(diff)")
        }
    }

    @Test func preprocessorConfigForms() throws {
        let legacy = #"{"size": 224, "crop_size": 224, "resample": 3, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]}"#
        let config = try decodeConfig(CLIPImageProcessorConfig.self, data: Data(legacy.utf8), name: "p.json")
        #expect(config.size == .shortestEdge(224) && config.cropSize == (224, 224) && config.imageMean == [0.5, 0.5, 0.5])
        let nearest = #"{"resample": 0}"#
        #expect(throws: ModelConfigError.self) {
            try decodeConfig(CLIPImageProcessorConfig.self, data: Data(nearest.utf8), name: "p.json")
        }
    }
}

// MARK: - Configs and checkpoint names

extension CLIPTests {
    /// A fixture config with one key changed or removed, decoded as `T`; returns the error message.
    static func configError<T: Decodable>(_ type: T.Type, from folder: URL, edit: (inout [String: Any]) -> Void) throws -> String {
        let data = try Data(contentsOf: folder.appendingPathComponent("config.json"))
        var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        edit(&json)
        let edited = try JSONSerialization.data(withJSONObject: json)
        do {
            _ = try decodeConfig(type, data: edited, name: "text_encoder/config.json")
            return ""
        } catch let error as ModelConfigError {
            return error.description
        }
    }

    @Test func unsupportedActivationIsNamed() throws {
        let folder = ModelFixtures.component("sd1", "text_encoder")
        let message = try Self.configError(CLIPTextConfig.self, from: folder) { $0["hidden_act"] = "relu" }
        #expect(message.contains("hidden_act 'relu'") && !message.contains("\n"), "\(message)")
        let vision = try Self.configError(CLIPVisionConfig.self, from: ModelFixtures.component("sd1", "image_encoder")) {
            $0["hidden_act"] = "gelu_new"
        }
        #expect(vision.contains("hidden_act 'gelu_new'"), "\(vision)")
    }

    @Test func missingKeyIsNamed() throws {
        let folder = ModelFixtures.component("sd1", "text_encoder")
        let message = try Self.configError(CLIPTextConfig.self, from: folder) { $0["hidden_size"] = nil }
        #expect(message.contains("missing key 'hidden_size'") && !message.contains("\n"), "\(message)")
        let vision = try Self.configError(CLIPVisionConfig.self, from: ModelFixtures.component("sd1", "image_encoder")) {
            $0["patch_size"] = nil
        }
        #expect(vision.contains("missing key 'patch_size'"), "\(vision)")
        let wrongKind = try Self.configError(CLIPTextConfig.self, from: folder) { $0["model_type"] = "clip_vision_model" }
        #expect(wrongKind.contains("model_type 'clip_vision_model'"), "\(wrongKind)")
    }

    /// Parameter paths are transformers' tensor names, written out here without Python.
    @Test func parameterPathsAreCheckpointNames() {
        let shape = CLIPEncoderShape(hiddenSize: 8, intermediateSize: 16, layers: 1, heads: 2,
                                     activation: .gelu, layerNormEps: 1e-5)
        let layer = ["layer_norm1.bias", "layer_norm1.weight", "layer_norm2.bias", "layer_norm2.weight",
                     "mlp.fc1.bias", "mlp.fc1.weight", "mlp.fc2.bias", "mlp.fc2.weight"]
            + ["k", "out", "q", "v"].flatMap { ["self_attn.\($0)_proj.bias", "self_attn.\($0)_proj.weight"] }
        let text = CLIPTextModel(config: CLIPTextConfig(vocabSize: 10, encoder: shape, projectionDim: 4), withProjection: true)
        let textNames = ["text_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
                         "text_model.final_layer_norm.bias", "text_model.final_layer_norm.weight", "text_projection.weight"]
            + layer.map { "text_model.encoder.layers.0.\($0)" }
        #expect(text.namedParameters().map(\.path).sorted() == textNames.sorted())
        #expect(text.text_projection!.weight.shape == [4, 8])

        let vision = CLIPVisionModel(config: CLIPVisionConfig(imageSize: 16, patchSize: 8, encoder: shape, projectionDim: 4))
        let visionNames = ["vision_model.embeddings.class_embedding", "vision_model.embeddings.patch_embedding.weight",
                           "vision_model.embeddings.position_embedding.weight", "vision_model.post_layernorm.bias",
                           "vision_model.post_layernorm.weight", "vision_model.pre_layrnorm.bias",
                           "vision_model.pre_layrnorm.weight", "visual_projection.weight"]
            + layer.map { "vision_model.encoder.layers.0.\($0)" }
        let parameters = vision.namedParameters()
        #expect(parameters.map(\.path).sorted() == visionNames.sorted())
        let patch = parameters.first { $0.path.hasSuffix("patch_embedding.weight") }!.parameter
        #expect(patch.checkpointShape == [8, 3, 8, 8])
        #expect(parameters.first { $0.path.hasSuffix("position_embedding.weight") }!.parameter.tensor.shape == [5, 8])
    }
}

// MARK: - Checkpoint layouts

extension CLIPTests {
    /// Hub checkpoints (transformers 4) name a plain CLIPTextModel's tensors `text_model.…` and
    /// keep the int64 `position_ids` buffer; transformers 5 saves them bare (as the fixture is).
    @Test func loadsPrefixedLegacyLayout() throws {
        let source = ModelFixtures.component("sd1", "text_encoder")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("clip-legacy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        let bare = try SafeTensorsFile(path: source.appendingPathComponent("model.safetensors").path)
        #expect(!bare.names.contains { $0.hasPrefix("text_model.") })
        var writer = SafeTensorsWriter()
        for name in bare.names {
            writer.add("text_model." + name, shape: try bare.info(name).shape, floats: try bare.floats(name))
        }
        let positions = (0..<77).flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) }
        writer.add("text_model.embeddings.position_ids", dtype: .i64, shape: [1, 77], bytes: positions)
        try writer.write(to: folder.appendingPathComponent("model.safetensors").path)

        let model = try CLIPTextModel.load(folder: folder)
        let refs = try ModelFixtures.references("sd1", "clip")
        let out = model.forward(ids: try Self.ids(refs, "text_encoder"))
        _ = Self.check("legacy layout", out.lastHiddenState, try refs.tensor("text_encoder.last_hidden_state"))

        // A bare checkpoint cannot hold a projection; asking for one is an error, not a silent skip.
        #expect(throws: ModelConfigError.self) { try CLIPTextModel.load(folder: source, withProjection: true) }
    }
}
