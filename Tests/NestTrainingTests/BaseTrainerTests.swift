import Foundation
import NestDiffusion
import NestEngine
import NestModels
@testable import NestTraining
import Testing

/// Tiny models built from configs in code, trained for a few dozen steps on a
/// fixed batch of procedurally drawn shapes: each loss must fall clearly, and
/// frozen parts must not move.
@Suite(.serialized) struct BaseTrainerTests {
    static let captions = ["red square", "blue circle", "green square", "yellow circle"]

    /// [4, size, size, 3] in [-1, 1]: a colored square or disc on a dark background.
    static func shapes(size: Int) -> Tensor {
        let colors: [[Float]] = [[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, -1]]
        var values: [Float] = []
        for (i, color) in colors.enumerated() {
            let disc = i % 2 == 1
            let c = Float(size) / 2, r = Float(size) * 0.3
            for y in 0..<size {
                for x in 0..<size {
                    let dx = Float(x) + 0.5 - c, dy = Float(y) + 0.5 - c
                    let inside = disc ? dx * dx + dy * dy <= r * r : max(abs(dx), abs(dy)) <= r
                    values += inside ? color : [-0.8, -0.8, -0.8]
                }
            }
        }
        return Tensor(values, shape: [4, size, size, 3])
    }

    /// A character-level CLIP tokenizer: a–z, each also as a word end, plus BOS/EOS (no merges).
    static func tokenizer(maxLength: Int = 16) throws -> CLIPTokenizer {
        var vocabulary: [String: Int] = [:]
        for (i, ch) in "abcdefghijklmnopqrstuvwxyz".enumerated() {
            vocabulary[String(ch)] = i
            vocabulary[String(ch) + "</w>"] = 26 + i
        }
        vocabulary["<|startoftext|>"] = 52
        vocabulary["<|endoftext|>"] = 53
        return try CLIPTokenizer(vocabulary: vocabulary, merges: [], maxLength: maxLength)
    }

    static func textConfig(hidden: Int) throws -> CLIPTextConfig {
        try JSONDecoder().decode(CLIPTextConfig.self, from: Data("""
            {"vocab_size": 54, "hidden_size": \(hidden), "intermediate_size": \(2 * hidden), "num_hidden_layers": 1,
             "num_attention_heads": 2, "max_position_embeddings": 16, "projection_dim": 16, "hidden_act": "quick_gelu",
             "bos_token_id": 52, "eos_token_id": 53, "pad_token_id": 53}
            """.utf8))
    }

    static func vae() throws -> AutoencoderKL {
        let vae = try AutoencoderKL(config: AutoencoderKLConfig(blockOutChannels: [8, 16], layersPerBlock: 1, latentChannels: 4,
                                                                normNumGroups: 4, sampleSize: 16))
        vae.randomizeWeights(seed: 11)
        return vae
    }

    static func snapshot(_ module: Module) -> [[Float]] { module.parameterTensors().map { $0.tensor.array } }

    static func timed(_ body: () -> Float) -> (Float, Double) {
        let start = Date()
        let value = body()
        return (value, Date().timeIntervalSince(start))
    }

    @Test func vaeReconstructionLossFalls() throws {
        let vae = try Self.vae()
        let trainer = VAETrainer(vae: vae, options: .init(learningRate: 2e-3, weightDecay: 0, warmupSteps: 2, seed: 1), klWeight: 1e-4)
        let images = Self.shapes(size: 16)
        var losses: [Float] = [], seconds = 0.0
        for _ in 0..<20 {
            let (loss, t) = Self.timed { trainer.step(images: images, fixedNoise: true) }
            losses.append(loss); seconds += t
        }
        print("VAE: loss \(losses[0]) → \(losses.last!) in 20 steps, \(String(format: "%.3f", seconds / 20)) s/step, \(vae.parameterCount) params")
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.last! < losses[0] / 2, "VAE loss \(losses[0]) → \(losses.last!)")
        #expect(trainer.parameters.count == vae.namedParameters().count && trainer.optimizer.step == 20)
    }

    /// A tiny SD1-style text-to-image stack: character tokenizer, 1-layer text encoder, VAE, 2-level UNet.
    static func unetTrainer(prediction: String = "epsilon", captionDropout: Float = 0.1, seed: UInt64 = 2) throws
        -> (UNetTrainer, CLIPTextModel) {
        let textEncoder = CLIPTextModel(config: try Self.textConfig(hidden: 16))
        textEncoder.randomizeWeights(seed: 21)
        let prompts = try PromptEncoder(tokenizers: [try Self.tokenizer()], encoders: [textEncoder])
        let unetConfig = try UNet2DConditionConfig.decode(Data("""
            {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16], "layers_per_block": 1,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
             "attention_head_dim": 2, "cross_attention_dim": 16, "norm_num_groups": 4}
            """.utf8))
        let unet = UNet2DConditionModel(config: unetConfig, seed: 31)
        let scheduler = try SchedulerConfig.decode(Data("""
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "\(prediction)"}
            """.utf8))
        let trainer = try UNetTrainer(unet: unet, vae: try Self.vae(), prompts: prompts, schedulerConfig: scheduler,
                                      options: .init(learningRate: 2e-3, weightDecay: 0, seed: seed), captionDropout: captionDropout)
        return (trainer, textEncoder)
    }

    @Test func unetDenoisingLossFalls() throws {
        let (trainer, textEncoder) = try Self.unetTrainer()
        let unet = trainer.unet, vae = trainer.vae
        let frozenVAE = Self.snapshot(vae), frozenText = Self.snapshot(textEncoder)
        let images = Self.shapes(size: 16)
        var losses: [Float] = [], seconds = 0.0
        for _ in 0..<20 {
            let (loss, t) = Self.timed { trainer.step(images: images, captions: Self.captions, fixedNoise: true) }
            losses.append(loss); seconds += t
        }
        print("UNet: loss \(losses[0]) → \(losses.last!) in 20 steps, \(String(format: "%.3f", seconds / 20)) s/step, \(unet.parameterCount) params")
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.last! < losses[0] * 0.6, "UNet loss \(losses[0]) → \(losses.last!)")
        #expect(Self.snapshot(vae) == frozenVAE, "the VAE changed")
        #expect(Self.snapshot(textEncoder) == frozenText, "the text encoder changed")
        #expect(trainer.parameters.count == unet.namedParameters().count)
    }

    /// Reusing the frozen VAE's encodings (keyed by image) changes nothing but speed.
    @Test func cachedLatentsTrainExactlyAsEncodingEveryStep() throws {
        // Same seeds for every parameter (biases too) in both trainers.
        let (plain, _) = try ParameterSeeds.scoped(40) { try Self.unetTrainer() }
        let (cached, _) = try ParameterSeeds.scoped(40) { try Self.unetTrainer() }
        let start = Self.snapshot(plain.unet) == Self.snapshot(cached.unet) && Self.snapshot(plain.vae) == Self.snapshot(cached.vae)
        #expect(start, "the two trainers start from the same weights")
        let images = Self.shapes(size: 16)
        let keys = (0..<images.shape[0]).map { "image-\($0)" }
        for step in 0..<3 {
            let a = plain.step(images: images, captions: Self.captions)
            let b = cached.step(images: images, captions: Self.captions, cacheKeys: keys)
            #expect(a == b, "step \(step): \(a) vs \(b)")
        }
        #expect(cached.posteriors.count == keys.count)
        let same = Self.snapshot(plain.unet) == Self.snapshot(cached.unet)
        #expect(same, "the trained weights agree")
    }

    /// The held-out loss draws each image's noise and timestep from its own
    /// seed: the same images score the same in one batch of 4, two of 2 or
    /// four of 1 (runs with different batch sizes compare), and other seeds
    /// draw other noise.
    @Test func heldOutLossDoesNotDependOnTheBatching() throws {
        let (trainer, _) = try Self.unetTrainer(prediction: "v_prediction")
        let images = Self.shapes(size: 16), seeds: [UInt64] = [17, 40, 63, 86]
        let whole = trainer.heldOutLoss(images: images, captions: Self.captions, seeds: seeds)
        func mean(of size: Int) -> Float {
            let parts = stride(from: 0, to: 4, by: size).map { start in
                trainer.heldOutLoss(images: images.slice(axis: 0, start..<start + size),
                                    captions: Array(Self.captions[start..<start + size]),
                                    seeds: Array(seeds[start..<start + size]))
            }
            return parts.reduce(0, +) / Float(parts.count)
        }
        for size in [1, 2] {
            let batched = mean(of: size)
            #expect(abs(batched - whole) <= 1e-5 * whole, "batches of \(size): \(batched) against \(whole) in one batch")
        }
        let other = trainer.heldOutLoss(images: images, captions: Self.captions, seeds: seeds.map { $0 + 1 })
        #expect(abs(other - whole) > 1e-4 * whole, "other seeds, the same loss \(whole)")
    }

    @Test func unetVelocityTargetAndCaptionDropout() throws {
        // v-prediction trains too.
        let (trainer, _) = try Self.unetTrainer(prediction: "v_prediction")
        #expect(trainer.predictsVelocity)
        let images = Self.shapes(size: 16)
        let first = trainer.step(images: images, captions: Self.captions, fixedNoise: true)
        var last = first
        for _ in 0..<9 { last = trainer.step(images: images, captions: Self.captions, fixedNoise: true) }
        #expect(last.isFinite && last < first, "v-prediction loss \(first) → \(last)")

        // Every caption dropped at rate 1, none at rate 0; at 0.5 some of 20 are.
        let (always, _) = try Self.unetTrainer(captionDropout: 1)
        always.step(images: images, captions: Self.captions)
        #expect(always.lastCaptions == ["", "", "", ""])
        let (never, _) = try Self.unetTrainer(captionDropout: 0)
        never.step(images: images, captions: Self.captions)
        #expect(never.lastCaptions == Self.captions)
        let (half, _) = try Self.unetTrainer(captionDropout: 0.5)
        var dropped = 0
        for _ in 0..<5 {
            half.step(images: images, captions: Self.captions)
            dropped += half.lastCaptions.filter(\.isEmpty).count
        }
        #expect((3...17).contains(dropped), "\(dropped) of 20 captions dropped at rate 0.5")

        // An unsupported prediction type is refused by name.
        #expect(throws: ModelConfigError.self) { _ = try Self.unetTrainer(prediction: "sample") }
    }

    @Test func clipMatchesImagesToCaptions() throws {
        let tokenizer = try Self.tokenizer()
        let vision = try JSONDecoder().decode(CLIPVisionConfig.self, from: Data("""
            {"image_size": 16, "patch_size": 4, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "projection_dim": 16, "hidden_act": "quick_gelu"}
            """.utf8))
        let model = try CLIPDualEncoder(text: try Self.textConfig(hidden: 32), vision: vision)
        model.randomizeWeights(seed: 41)
        let names = model.namedParameters().map(\.path)
        #expect(names.contains("text_model.embeddings.token_embedding.weight") && names.contains("vision_model.post_layernorm.weight"))
        #expect(names.contains("text_projection.weight") && names.contains("visual_projection.weight") && names.contains("logit_scale"))
        #expect(abs(model.logit_scale.item - log(1 / 0.07)) < 1e-6)

        let trainer = try CLIPTrainer(model: model, tokenizer: tokenizer, options: .init(learningRate: 1e-3, weightDecay: 0.01, seed: 3))
        let pixels = Self.shapes(size: 16)
        var losses: [Float] = [], seconds = 0.0
        for _ in 0..<20 {
            let (loss, t) = Self.timed { trainer.step(pixels: pixels, captions: Self.captions) }
            losses.append(loss); seconds += t
        }
        print("CLIP: loss \(losses[0]) → \(losses.last!) in 20 steps, \(String(format: "%.3f", seconds / 20)) s/step, \(model.parameterCount) params")
        #expect(losses.last! < losses[0] / 2, "CLIP loss \(losses[0]) → \(losses.last!)")
        #expect(exp(model.logit_scale.item) <= CLIPDualEncoder.maximumLogitScale * 1.0001)

        let similarity = Autograd.noGrad { model.logitsPerImage(pixels: pixels, ids: trainer.ids(Self.captions)) }
        for i in 0..<4 {
            let row = Array(similarity.array[(i * 4)..<(i * 4 + 4)])
            #expect(row.firstIndex(of: row.max()!) == i, "image \(i) prefers caption \(row.firstIndex(of: row.max()!)!): \(row)")
        }
    }

    static func identityEncoder() throws -> CLIPVisionModel {
        let config = try JSONDecoder().decode(CLIPVisionConfig.self, from: Data("""
            {"image_size": 16, "patch_size": 4, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "projection_dim": 16, "hidden_act": "quick_gelu"}
            """.utf8))
        let encoder = CLIPVisionModel(config: config)
        encoder.randomizeWeights(seed: 43)
        return encoder
    }

    @Test func identityLossIsInfoNCEBothWaysWithOneSubjectsPairsLeftOut() throws {
        let trainer = try IdentityEncoderTrainer(encoder: try Self.identityEncoder())
        let anchors = Tensor.randn([4, 16, 16, 3], seed: 1), positives = Tensor.randn([4, 16, 16, 3], seed: 2)
        func unit(_ x: Tensor) -> [[Double]] {
            let rows = Autograd.noGrad { trainer.encoder.forward(pixels: x).imageEmbeds! }
            let d = rows.shape[1]
            return (0..<4).map { i in
                let r = rows.array[(i * d)..<((i + 1) * d)].map(Double.init)
                let norm = r.map { $0 * $0 }.reduce(0, +).squareRoot()
                return r.map { $0 / norm }
            }
        }
        let a = unit(anchors), p = unit(positives)
        // By hand: cross-entropy of each row of cos/τ over the columns not excluded, then of each column, averaged.
        func expected(excluded: Set<[Int]>) -> Double {
            let logit = { (i: Int, j: Int) -> Double in zip(a[i], p[j]).map(*).reduce(0, +) / Double(IdentityEncoderTrainer.temperature) }
            func term(_ i: Int, _ others: (Int) -> Double, _ keep: (Int) -> Bool) -> Double {
                let total = (0..<4).filter(keep).map { exp(others($0)) }.reduce(0, +)
                return log(total) - others(i)
            }
            let rows = (0..<4).map { i in term(i, { logit(i, $0) }, { !excluded.contains([i, $0]) }) }
            let columns = (0..<4).map { j in term(j, { logit($0, j) }, { !excluded.contains([$0, j]) }) }
            return (rows.reduce(0, +) + columns.reduce(0, +)) / 8
        }
        let plain = Autograd.noGrad { trainer.loss(anchors: anchors, positives: positives, sameSubject: { _, _ in false }) }.item
        #expect(abs(Double(plain) - expected(excluded: [])) < 1e-4, "\(plain) against \(expected(excluded: []))")
        let same = Autograd.noGrad { trainer.loss(anchors: anchors, positives: positives, sameSubject: { Set([$0, $1]) == [0, 1] }) }.item
        let byHand = expected(excluded: [[0, 1], [1, 0]])
        #expect(abs(Double(same) - byHand) < 1e-4, "\(same) against \(byHand)")
        #expect(abs(byHand - expected(excluded: [])) > 1e-3, "leaving a pair out changes the loss")
    }

    @Test func identityEncoderLearnsWhichPhotosShowOneSubject() throws {
        let encoder = try Self.identityEncoder()
        let trainer = try IdentityEncoderTrainer(encoder: encoder, options: .init(learningRate: 2e-3, weightDecay: 0.01, seed: 3))
        // Two photos of each of four subjects: the shape drawn on another background and with noise.
        let anchors = Self.shapes(size: 16)
        let positives = (Self.shapes(size: 16) * 0.8 + Tensor.randn([4, 16, 16, 3], seed: 9, std: 0.15)).addingScalar(0.1)
        func matches() -> [Int] {
            let a = Autograd.noGrad { unitRows(encoder.forward(pixels: anchors).imageEmbeds!) }
            let p = Autograd.noGrad { unitRows(encoder.forward(pixels: positives).imageEmbeds!) }
            let s = F.matmul(a, p, transposeB: true).array
            return (0..<4).map { i in (0..<4).max { s[i * 4 + $0] < s[i * 4 + $1] }! }
        }
        var losses: [Float] = []
        for _ in 0..<30 { losses.append(trainer.step(anchors: anchors, positives: positives, sameSubject: { _, _ in false })) }
        #expect(losses.last! < losses[0] / 2, "identity loss \(losses[0]) → \(losses.last!)")
        #expect(matches() == [0, 1, 2, 3], "each photo's nearest other photo shows its subject: \(matches())")
        #expect(trainer.state.step == 30)
    }

    @Test func checkpointRoundTripResumesTheVAE() throws {
        let vae = try Self.vae()
        let trainer = VAETrainer(vae: vae, options: .init(learningRate: 1e-3, seed: 4))
        let images = Self.shapes(size: 16)
        trainer.step(images: images)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vae-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TrainingCheckpoint.save(parameters: trainer.parameters, optimizer: trainer.optimizer, state: trainer.state, to: path)
        let next = trainer.step(images: images)

        let other = VAETrainer(vae: try Self.vae(), options: .init(learningRate: 1e-3, seed: 4))
        other.state = try TrainingCheckpoint.load(into: other.parameters, optimizer: other.optimizer, from: path)
        #expect(other.state.step == 1 && other.optimizer.step == 1)
        #expect(abs(other.step(images: images) - next) <= 1e-6 * abs(next))
    }
}
