import NestTestSupport
import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import NestTraining
import Testing

@Suite(.serialized) struct AdapterTrainerTests {
    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// The sd1 pipeline fixture plus the sd1 image encoder, as one model folder.
    static let folder = ModelFolderFixture.withImageEncoder("sd1", prefix: "nest-trainer")

    /// A small nested adapter for the fixture's UNet.
    static func tinyNestedConfig(_ base: StableDiffusionPipeline) -> AdapterConfig {
        AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                      imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                      resampler: .init(embeddingDim: 32, width: 32, outputDim: 32, depth: 1, heads: 2, headDim: 16, queries: 8),
                      layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers))
    }

    static func image(_ seed: UInt64, size: Int = 32) -> RGBImage {
        var rng = SeededRandom(seed: seed)
        let base = (0..<3).map { _ in rng.nextInt(below: 256) }
        var pixels: [UInt8] = []
        for y in 0..<size { for x in 0..<size { for c in 0..<3 { pixels.append(UInt8((base[c] + x * 5 * (c + 1) + y * 3) % 256)) } } }
        return try! RGBImage(width: size, height: size, pixels: pixels)
    }

    /// One step: a finite loss, a gradient for every adapter parameter, and
    /// nothing but the adapter changes. (Overfitting a handful of samples ten-fold
    /// is not reachable with a random frozen tiny UNet — see the closing note.)
    /// Likewise for the baselines trained on the same encoder.
    @Test(arguments: [AdapterConfig.Kind.nested, .ipAdapter, .singleToken])
    func oneStepTrainsOnlyTheAdapter(kind: AdapterConfig.Kind) throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = AdapterConfig(kind: kind, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 32, outputDim: 32, depth: 1, heads: 2, headDim: 16, queries: 8),
                                   layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers),
                                   contextWidth: base.unet.config.levels[0].crossAttentionDim)
        let adapter = PersonalizationAdapter(config: config, seed: 1)
        var options = AdapterTrainingOptions()
        options.resolution = 32
        options.learningRate = 1e-3
        options.dropImage = 0; options.dropText = 0; options.dropBoth = 0
        let unetBefore = base.unet.parameterTensors().map { $0.tensor.array }
        let adapterBefore = adapter.parameterTensors().map { $0.tensor.array }
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: adapter, options: options)
        let examples = (0..<2).map { i in
            AdapterExample(target: Self.image(UInt64(i)), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        let loss = try trainer.step(examples)
        #expect(loss.isFinite && loss > 0)
        #expect(trainer.state.step == 1 && trainer.optimizer.step == 1)
        let adapterAfter = adapter.parameterTensors().map { $0.tensor.array }
        let changed = zip(adapterBefore, adapterAfter).filter { $0 != $1 }.count
        #expect(changed == adapterBefore.count, "\(changed) of \(adapterBefore.count) adapter tensors changed")
        #expect(base.unet.parameterTensors().map { $0.tensor.array } == unetBefore, "the base UNet must stay frozen")
        #expect(base.unet.crossAttentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor },
                "the step must leave plain processors behind")
    }

    /// `unet_learning_rate`: the UNet trains with the adapter, its weights in
    /// the optimizer under "unet." at their own rate; the step changes them.
    @Test func aUNetRateTrainsTheUNetWithTheAdapter() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = Self.tinyNestedConfig(base)
        let options = try JSONDecoder().decode(AdapterTrainingOptions.self, from: Data(
            #"{"resolution": 32, "learning_rate": 1e-3, "unet_learning_rate": 2.5e-4, "drop_image": 0, "drop_text": 0, "drop_both": 0}"#.utf8))
        let unetBefore = base.unet.parameterTensors().map { $0.tensor.array }
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: PersonalizationAdapter(config: config, seed: 1), options: options)
        let unetNames = Set(base.unet.parameterTensors().map { AdapterTrainer.unetPrefix + $0.path })
        let trained = trainer.optimizer.parameters.enumerated().filter { unetNames.contains($0.element.path) }
        #expect(trained.count == unetNames.count, "every UNet weight is trained")
        #expect(trained.allSatisfy { abs(trainer.optimizer.rateScales[$0.offset] - 0.25) < 1e-6 })
        #expect(trainer.optimizer.rateScales.filter { $0 == 1 }.count == trainer.optimizer.parameters.count - unetNames.count)
        let examples = (0..<2).map { i in
            AdapterExample(target: Self.image(UInt64(i)), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        try trainer.step(examples)
        let changed = zip(unetBefore, base.unet.parameterTensors().map { $0.tensor.array }).filter { $0 != $1 }.count
        #expect(changed > unetBefore.count / 2, "\(changed) of \(unetBefore.count) UNet tensors changed")
        #expect(trainer.checkpointTensors.contains { unetNames.contains($0.path) }, "a resume restores the UNet too")
    }

    /// `timestep_range`: every drawn timestep falls in [lower, upper); a range
    /// past the scheduler's training steps, or an empty one, is refused.
    @Test func timestepRangeBoundsTheDrawnTimesteps() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = Self.tinyNestedConfig(base)
        let examples = (0..<6).map { i in
            AdapterExample(target: Self.image(UInt64(i)), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        let options = try JSONDecoder().decode(AdapterTrainingOptions.self,
                                               from: Data(#"{"resolution": 32, "timestep_range": [700, 760]}"#.utf8))
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: PersonalizationAdapter(config: config, seed: 1), options: options)
        var drawn: [Int] = []
        for step in 0..<4 {
            trainer.state.step = step
            drawn += try trainer.prepare(examples).timesteps
        }
        #expect(drawn.allSatisfy { (700..<760).contains($0) }, "\(drawn)")
        #expect(Set(drawn).count > 5, "timesteps must still vary: \(drawn)")
        #expect(try trainer.prepare(examples, fixedNoise: true).timesteps.allSatisfy { (700..<760).contains($0) })

        // A range past the scheduler is refused when the trainer is built, before any step.
        var past = options; past.timestepRange = [500, 5000]
        #expect(throws: ModelConfigError.self) {
            try AdapterTrainer(pipeline: try PersonalizedPipeline(base: base), adapter: PersonalizationAdapter(config: config, seed: 1), options: past)
        }
        #expect(throws: ModelConfigError.self) {
            try JSONDecoder().decode(AdapterTrainingOptions.self, from: Data(#"{"timestep_range": [300, 300]}"#.utf8))
        }
    }

    /// `subject_loss_weight`: the loss weights follow the mask (the weight
    /// where it is white, 1 where black, averaged over each latent cell), the
    /// weighted loss differs from the plain one, and a record without a mask
    /// is refused with a message.
    @Test func subjectLossWeightFollowsTheMask() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 32, outputDim: 32, depth: 1, heads: 2, headDim: 16, queries: 8),
                                   layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers),
                                   contextWidth: base.unet.config.levels[0].crossAttentionDim)
        var options = AdapterTrainingOptions()
        options.resolution = 32
        options.flipTargets = false
        options.subjectLossWeight = 5
        options.dropImage = 0; options.dropText = 0; options.dropBoth = 0
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: PersonalizationAdapter(config: config, seed: 1), options: options)
        // Left half white.
        let mask = try RGBImage(width: 32, height: 32, pixels: (0..<(32 * 32)).flatMap { i in Array(repeating: UInt8(i % 32 < 16 ? 255 : 0), count: 3) })
        let example = AdapterExample(target: Self.image(1), caption: "a <critter> on the beach", references: [Self.image(2)], mask: mask)
        let batch = try trainer.prepare([example], fixedNoise: true)
        let w = try #require(batch.lossWeights)
        #expect(w.shape == batch.target.shape)
        let (h, width, c) = (w.shape[1], w.shape[2], w.shape[3])
        for y in 0..<h { for x in 0..<width { for ch in 0..<c {
            let expected: Float = x < width / 2 ? 5 : 1
            #expect(w.data[(y * width + x) * c + ch] == expected)
        } } }
        let prediction = try Autograd.noGrad { try trainer.predict(batch) }
        #expect(F.weightedMSELoss(prediction, batch.target, weights: w).item != F.mseLoss(prediction, batch.target).item)
        var bare = example; bare.mask = nil
        #expect(throws: ModelConfigError.self) { try trainer.prepare([bare]) }

        // `effect`: the base model's loss is the UNet's alone (weighted like training),
        // its error the plain RMS, and the adapter moves the prediction.
        let e = try trainer.effect(batch)
        let alone = Autograd.noGrad {
            base.unet(sample: batch.noisy, timestep: batch.timesteps.map(Float.init), encoderHiddenStates: batch.context, added: batch.added)
        }
        #expect(abs(e.baseLoss - F.weightedMSELoss(alone, batch.target, weights: w).item) < 1e-6)
        #expect(abs(e.baseError - F.mseLoss(alone, batch.target).item.squareRoot()) < 1e-6)
        #expect(abs(e.loss - F.weightedMSELoss(prediction, batch.target, weights: w).item) < 1e-6)
        #expect(e.shift > 0 && e.loss != e.baseLoss)
    }

    /// `train_image_encoder`: the adapter's own copy of the image encoder trains
    /// with it (the shared encoder does not), and the trained copy saves and
    /// loads with the adapter, giving the same encoder tokens.
    @Test func tunedImageEncoderTrainsAndTravelsWithTheAdapter() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32, tuned: true),
                                   resampler: .init(embeddingDim: 32, width: 32, outputDim: 32, depth: 1, heads: 2, headDim: 16, queries: 8),
                                   layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers))
        let adapter = PersonalizationAdapter(config: config, seed: 1)
        adapter.attachImageEncoder(copying: pipe.imageEncoder)
        let sharedBefore = pipe.imageEncoder.parameterTensors().map { $0.tensor.array }
        let before = Dictionary(uniqueKeysWithValues: adapter.parameterTensors().map { ($0.path, $0.tensor.array) })
        var options = AdapterTrainingOptions()
        options.resolution = 32
        options.learningRate = 1e-3
        options.dropImage = 0; options.dropText = 0; options.dropBoth = 0
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: adapter, options: options)
        let examples = (0..<2).map { i in
            AdapterExample(target: Self.image(UInt64(i)), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        #expect(try trainer.step(examples).isFinite)
        let after = Dictionary(uniqueKeysWithValues: adapter.parameterTensors().map { ($0.path, $0.tensor.array) })
        let encoderPaths = after.keys.filter { $0.hasPrefix("image_encoder.") }
        #expect(encoderPaths.count == pipe.imageEncoder.vision_model.parameterTensors().count)
        for path in encoderPaths where path.contains(".embeddings.") || path.contains(".encoder.layers.0.") {
            #expect(before[path] != after[path], "\(path) should train")
        }
        for path in encoderPaths where path.contains("post_layernorm") {
            #expect(before[path] == after[path], "\(path) lies past the feature layer: no gradient")
        }
        #expect(pipe.imageEncoder.parameterTensors().map { $0.tensor.array } == sharedBefore, "the model's encoder stays frozen")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-tuned-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try adapter.save(path: dir.appendingPathComponent("critter").path)
        #expect(throws: ModelConfigError.self) { try PersonalizationAdapter.load(path: dir.appendingPathComponent("critter").path) }
        let other = try PersonalizedPipeline(base: try StableDiffusionPipeline.load(folder: Self.folder))
        try other.addAdapter(path: dir.appendingPathComponent("critter").path)
        let subject = Subject(placeholder: "<critter>", images: [Self.image(7)])
        let trained = pipe.encoderTokens(subject, adapter: adapter).array
        #expect(other.encoderTokens(subject, adapter: other.adapters["<critter>"]!).array == trained)
        let untuned = PersonalizationAdapter(config: { var c = config; c.imageEncoder.tuned = false; return c }(), seed: 1)
        for (mine, theirs) in zip(untuned.resampler.namedParameters(), adapter.resampler.namedParameters()) {
            mine.parameter.tensor.assign(theirs.parameter.tensor)
        }
        #expect(pipe.encoderTokens(subject, adapter: untuned).array != trained, "the tuned encoder changes the tokens")
    }

    /// The trainer can overfit: on a handful of fixed samples whose target is
    /// realizable — a teacher adapter's prediction through the same frozen UNet —
    /// the loss falls at least ten-fold. (With the plain denoising target a
    /// random frozen tiny UNet leaves the adapter too little control to show this.)
    @Test func tinyAdapterOverfitsARealizableTarget() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4, ffMult: 2),
                                   layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers))
        let student = PersonalizationAdapter(config: config, seed: 1)
        let teacher = PersonalizationAdapter(config: config, seed: 2)
        for (_, t) in teacher.parameterTensors() where t.rank == 2 { t.assign(t.scaled(3)) }
        var options = AdapterTrainingOptions()
        options.resolution = 16
        options.learningRate = 2e-2
        options.weightDecay = 0
        options.gradientClip = nil
        options.dropImage = 0; options.dropText = 0; options.dropBoth = 0
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: student, options: options)
        let examples = (0..<3).map { i in
            AdapterExample(target: Self.image(UInt64(i), size: 16), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        var batch = try trainer.prepare(examples, fixedNoise: true)
        batch.target = try Autograd.noGrad { () -> Tensor in
            let binding = try NestedAttentionBinding.install(on: base.unet, subjects: [
                NestedBindingSubject(adapter: teacher, tokens: teacher.encode(features: batch.features), tokenIndex: batch.tokenIndex)])
            defer { binding.uninstall() }
            return base.unet(sample: batch.noisy, timestep: batch.timesteps.map(Float.init), encoderHiddenStates: batch.context)
        }
        var losses: [Float] = []
        for _ in 0..<60 { losses.append(try trainer.optimize(batch)) }
        print("adapter overfit (teacher target): loss \(losses.first!) → \(losses.last!)")
        #expect(losses.last! < losses.first! / 10, "loss fell only from \(losses.first!) to \(losses.last!)")
    }

    /// N steps straight equal N/2 steps, a checkpoint, a fresh trainer, and N/2 more.
    @Test func adapterTrainingResumesExactly() throws {
        func makeTrainer() throws -> AdapterTrainer {
            let base = try StableDiffusionPipeline.load(folder: Self.folder)
            let pipe = try PersonalizedPipeline(base: base)
            let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                       imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                       resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4, ffMult: 2),
                                       layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers))
            var options = AdapterTrainingOptions()
            options.resolution = 16
            options.learningRate = 1e-3
            options.dropImage = 0.3; options.dropText = 0.2; options.dropBoth = 0.1
            return try AdapterTrainer(pipeline: pipe, adapter: PersonalizationAdapter(config: config, seed: 3), options: options)
        }
        let examples = (0..<2).map { i in
            AdapterExample(target: Self.image(UInt64(i), size: 16), caption: "a <critter> at night", references: [Self.image(UInt64(i) + 50)])
        }
        let straight = try makeTrainer()
        for _ in 0..<4 { try straight.step(examples) }
        let first = try makeTrainer()
        for _ in 0..<2 { try first.step(examples) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nest-adapter-resume-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TrainingCheckpoint.save(parameters: first.adapter.trainableParameters, optimizer: first.optimizer, state: first.state, to: path)
        let resumed = try makeTrainer()
        resumed.state = try TrainingCheckpoint.load(into: resumed.adapter.trainableParameters, optimizer: resumed.optimizer, from: path)
        for _ in 0..<2 { try resumed.step(examples) }
        for ((name, a), (_, b)) in zip(straight.adapter.parameterTensors(), resumed.adapter.parameterTensors()) {
            let worst = zip(a.array, b.array).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-6, "\(name) differs by \(worst) after resume")
        }
    }
}
