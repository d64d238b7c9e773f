import Foundation
import NestDiffusion
import NestEngine
import NestModels
@testable import NestTraining
import Testing

/// The localization term: mean attention outside the subject minus inside,
/// per layer and sample; and training with it moves the noun's attention
/// onto the subject.
@Suite(.serialized) struct AttentionLocalizationTests {
    @Test func termIsOutsideMinusInsideMean() throws {
        // 4×4 masks at 4×4 maps: item 0 has its subject in the left half.
        let mask = Tensor((0..<16).map { Float($0 % 4 < 2 ? 1 : 0) } + [Float](repeating: 0, count: 16), shape: [2, 4, 4, 1])
        let onSubject = Tensor((0..<16).map { Float($0 % 4 < 2 ? 0.5 : 0.1) } + [Float](repeating: 0.3, count: 16), shape: [2, 16])
        let uniform = Tensor([Float](repeating: 0.2, count: 32), shape: [2, 16])
        // Item 1's mask is empty: it does not count, whatever its map says.
        let a = AttentionLocalization.loss(maps: [onSubject], tokens: [3, 5], masks: mask)!
        #expect(abs(a.item - (0.1 - 0.5)) < 1e-6)
        #expect(abs(AttentionLocalization.loss(maps: [uniform], tokens: [3, 5], masks: mask)!.item) < 1e-6)
        // Coarser maps average the mask per cell (2×2 map: left column inside).
        let coarse = Tensor([0.6, 0.2, 0.6, 0.2, 0, 0, 0, 0], shape: [2, 4])
        #expect(abs(AttentionLocalization.loss(maps: [coarse], tokens: [1, nil], masks: mask)!.item - (0.2 - 0.6)) < 1e-6)
        #expect(AttentionLocalization.loss(maps: [onSubject], tokens: [nil, nil], masks: mask) == nil)
    }

    @Test func trainingLocalizesTheNoun() throws {
        let (base, _) = try BaseTrainerTests.unetTrainer(captionDropout: 0)
        let trainer = try UNetTrainer(unet: base.unet, vae: base.vae, prompts: base.prompts,
                                      schedulerConfig: try SchedulerConfig.decode(Data(#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#.utf8)),
                                      options: .init(learningRate: 3e-3, weightDecay: 0, seed: 2), captionDropout: 0,
                                      localization: AttentionLocalization(weight: 1, words: ["s"]))
        let images = BaseTrainerTests.shapes(size: 16)
        // The shapes are bright on a dark (−0.8) background: that is the subject.
        let masks = Tensor(stride(from: 0, to: images.count, by: 3).map { images.data[$0 + 1] > -0.8 || images.data[$0] > -0.8 ? 1 : 0 },
                           shape: [4, 16, 16, 1])
        let captions = ["a s", "b s", "c s", "d s"]
        var terms: [Float] = []
        for _ in 0..<30 {
            trainer.step(images: images, captions: captions, fixedNoise: true, masks: masks)
            terms.append(try #require(trainer.lastLocalizationLoss))
        }
        #expect(abs(terms[0]) < 0.05, "an untrained model attends alike inside and out: \(terms[0])")
        #expect(terms.suffix(5).reduce(0, +) / 5 < terms[0] - 0.1, "localization \(terms[0]) → \(terms.suffix(5))")
        // Without masks there is no term; the processors are back to plain attention.
        trainer.step(images: images, captions: captions, fixedNoise: true)
        #expect(trainer.lastLocalizationLoss == nil)
        #expect(trainer.unet.crossAttentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor })
        #expect(throws: ModelConfigError.self) {
            try UNetTrainer(unet: base.unet, vae: base.vae, prompts: base.prompts,
                            schedulerConfig: try SchedulerConfig.decode(Data("{}".utf8)),
                            localization: AttentionLocalization(weight: 1, words: ["two"]))
        }
    }
}
