import Foundation
import NestDiffusion
import NestEngine
import NestModels
import Testing
@testable import NestWorld

/// The untrained world folder: configs the model family decodes, and a
/// tokenizer that spells every caption word as one token.
@Suite struct WorldModelTests {
    @Test func skeletonDecodesAndTokenizerSpellsTheWorld() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("world-model-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try WorldModel.writeSkeleton(to: dir)
        #expect(throws: WorldError.self) { try WorldModel.writeSkeleton(to: dir) }

        let unet = try UNet2DConditionConfig.load(from: dir.appendingPathComponent("unet/config.json"))
        #expect(unet.levels[0].crossAttentionDim == WorldModel.width)
        let text = try decodeConfig(CLIPTextConfig.self, from: dir.appendingPathComponent("text_encoder/config.json"))
        let tokenizer = try CLIPTokenizer.load(folder: dir.appendingPathComponent("tokenizer"))
        #expect(tokenizer.maxLength == text.maxPositionEmbeddings)
        _ = try decodeConfig(AutoencoderKLConfig.self, from: dir.appendingPathComponent("vae/config.json"))
        _ = try decodeConfig(CLIPVisionConfig.self, from: dir.appendingPathComponent("image_encoder/config.json"))
        // transformers 5 rejects an int where its config wants a float: whole floats keep their ".0".
        for component in ["text_encoder", "image_encoder"] {
            let json = try String(contentsOf: dir.appendingPathComponent("\(component)/config.json"), encoding: .utf8)
            #expect(json.contains("\"initializer_factor\" : 1.0,") && json.contains("\"attention_dropout\" : 0.0,"), "\(json)")
            #expect(json.contains("\"num_hidden_layers\" : 4,"), "ints stay ints")
        }

        // New worlds train on a zero-terminal-SNR schedule with v-prediction: the
        // last training timestep holds no trace of the picture (Stable Diffusion's
        // keeps √ᾱ ≈ 0.07 of it), and sampling starts there ("trailing").
        let zeroSNR = try SchedulerConfig.load(from: dir.appendingPathComponent("scheduler/scheduler_config.json"))
        #expect(zeroSNR.predictionType == "v_prediction" && zeroSNR.rescaleBetasZeroSnr == true)
        #expect(zeroSNR.timestepSpacing == "trailing")
        let terminal = try makeScheduler(kind: .ddim, config: zeroSNR, stepCount: 4).noiseSchedule.alphasCumprod.last!
        #expect(terminal < 1e-6, "terminal ᾱ \(terminal)")

        // The older editions' schedule, on request: Stable Diffusion 1.x's. A DDIM
        // made from it leaves x̂₀ unclamped (as SD 1.5's does): with ε = 0 the last
        // step returns the sample / √ᾱ_t, here well past ±1 (clip_sample,
        // diffusers' DDIM default, would cut it to 1).
        let sd = FileManager.default.temporaryDirectory.appendingPathComponent("world-model-sd-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: sd) }
        try WorldModel.writeSkeleton(to: sd, schedule: .sd)
        let schedulerConfig = try SchedulerConfig.load(from: sd.appendingPathComponent("scheduler/scheduler_config.json"))
        #expect(schedulerConfig.predictionType == "epsilon" && schedulerConfig.timestepSpacing == "leading")
        var ddim = try makeScheduler(kind: .ddim, config: schedulerConfig, stepCount: 4)
        #expect(abs(ddim.noiseSchedule.alphasCumprod.last! - 0.0047) < 0.0005, "SD 1.x's terminal ᾱ")
        let sample = Tensor(Array(repeating: 3, count: 4), shape: [1, 1, 1, 4])
        let last = ddim.step(modelOutput: Tensor(zeros: [1, 1, 1, 4]), step: 3, sample: sample)
        #expect(last.array.allSatisfy { $0 > 3 }, "DDIM clamped x̂₀: \(last.array)")

        // The wide shot's captions, then the near framings' (at the end); a world
        // described in full spells every trait word whole too, in more positions.
        let full = dir.appendingPathComponent("full")
        try WorldModel.writeSkeleton(to: full, settings: WorldSettings(framings: Framing.near, referenceFraming: .closeUp,
                                                                       traitWords: .full))
        for (detail, folder) in [(TraitDetail.glance, dir), (.full, full)] {
            let tokenizer = try CLIPTokenizer.load(folder: folder.appendingPathComponent("tokenizer"))
            let corpus = WorldModel.captionCorpus(detail)
            var longest = 0
            for caption in corpus.prefix(2000) + corpus.suffix(1000) {
                let words = caption.split(whereSeparator: { $0 == " " || $0 == "," || $0 == ":" }).count
                let punctuation = caption.filter { $0 == "," || $0 == ":" }.count
                let ids = tokenizer.encodeWithoutSpecialTokens(caption)
                #expect(ids.count == words + punctuation, "one token per word: \(caption)")
                longest = max(longest, ids.count + 2)
            }
            #expect(longest <= WorldModel.maxTokens(detail), "captions fit the text model (longest \(longest))")
            #expect(tokenizer.maxLength == WorldModel.maxTokens(detail))
        }
        // A glance-word world keeps its vocabulary (text encoders trained for it still fit):
        // the full one only adds words.
        let glanceVocabulary = try CLIPTokenizer.load(folder: dir.appendingPathComponent("tokenizer")).vocabulary
        let fullVocabulary = try CLIPTokenizer.load(folder: full.appendingPathComponent("tokenizer")).vocabulary
        #expect(glanceVocabulary.count == 774 && fullVocabulary.count > 1200)
        #expect(glanceVocabulary.allSatisfy { fullVocabulary[$0.key] != nil })
        // Words outside the world still tokenize (byte by byte), inside the vocabulary.
        let odd = tokenizer.encodeWithoutSpecialTokens("zyzzyva ünïcode")
        #expect(!odd.isEmpty && odd.allSatisfy { $0 < text.vocabSize })
    }
}

/// `world.json`: the framings a world is trained on travel with its folder; a
/// folder without one is a first-edition world; a broken one is named.
@Suite struct WorldSettingsTests {
    @Test func settingsAreRecordedReadAndChecked() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("world-settings-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let near = WorldSettings(framings: Framing.near, referenceFraming: .closeUp)
        try WorldModel.writeSkeleton(to: dir.appendingPathComponent("near"), settings: near)
        #expect(try WorldSettings.read(model: dir.appendingPathComponent("near")) == near)
        #expect(near.traitWords == .glance, "a world.json without trait_words is a glance-word world")
        let described = WorldSettings(framings: Framing.near, referenceFraming: .closeUp, traitWords: .full)
        try WorldModel.writeSkeleton(to: dir.appendingPathComponent("described"), settings: described)
        #expect(try WorldSettings.read(model: dir.appendingPathComponent("described")) == described)
        #expect(try String(contentsOf: dir.appendingPathComponent("described/world.json"), encoding: .utf8)
                    .contains(#""trait_words" : "full""#))
        try WorldModel.writeSkeleton(to: dir.appendingPathComponent("wide"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("wide/world.json").path))
        #expect(try WorldSettings.read(model: dir.appendingPathComponent("wide")) == .firstEdition)
        let broken = dir.appendingPathComponent("wide/world.json")
        try Data(#"{"framings": ["portrait", "selfie"], "reference_framing": "close-up"}"#.utf8).write(to: broken)
        #expect(throws: WorldError("\(broken.path): not a world settings file (\"framings\": [...], \"reference_framing\": \"...\")")) {
            try WorldSettings.read(model: dir.appendingPathComponent("wide"))
        }
        try Data(#"{"framings": ["portrait"], "reference_framing": "close-up", "trait_words": "some"}"#.utf8).write(to: broken)
        #expect(throws: WorldError("\(broken.path): \"trait_words\" is \"some\"; use one of glance, full")) {
            try WorldSettings.read(model: dir.appendingPathComponent("wide"))
        }
        try Data(#"{"framings": [], "reference_framing": "close-up"}"#.utf8).write(to: broken)
        #expect(throws: WorldError("\(broken.path): no framings listed")) { try WorldSettings.read(model: dir.appendingPathComponent("wide")) }
    }
}

/// `nest world model --unet-channels --unet-layers`: a larger UNet's config, checked in one line.
@Suite struct WorldUNetShapeTests {
    @Test func aLargerUNetIsWrittenAndBadShapesAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("world-model-big-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let shape = try WorldUNetShape(channels: "128, 256,384", layersPerBlock: 2)
        try WorldModel.writeSkeleton(to: dir, unet: shape)
        let config = try UNet2DConditionConfig.load(from: dir.appendingPathComponent("unet/config.json"))
        #expect(config.levels.map(\.channels) == [128, 256, 384])
        #expect(config.levels.allSatisfy { $0.layers == 2 })
        for (text, layers, message) in [("64,128", 1, "three whole widths"), ("64,128,x", 1, "three whole widths"),
                                        ("64,100,192", 1, "got 100"), ("64,128,192", 0, "--unet-layers")] {
            #expect { try WorldUNetShape(channels: text, layersPerBlock: layers) } throws: { error in
                "\(error)".contains(message) && !"\(error)".contains("\n")
            }
        }
        #expect(try WorldUNetShape(channels: "64,128,192", layersPerBlock: 1) == .standard)
    }
}
