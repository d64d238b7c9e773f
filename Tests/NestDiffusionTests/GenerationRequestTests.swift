import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import Testing

/// The limits every request is held to, batching, and non-finite results.
@Suite struct GenerationRequestTests {
    static let sd1 = PipelineTests.root.appendingPathComponent("sd1")

    func problem(_ change: (inout GenerationConfiguration) -> Void) -> GenerationRequestError? {
        var c = GenerationConfiguration(prompt: "a cat")
        change(&c)
        do { try c.validate(); return nil } catch { return error as? GenerationRequestError }
    }

    @Test func outOfRangeFieldsAreNamed() {
        #expect(problem { _ in } == nil)
        let cases: [(String, (inout GenerationConfiguration) -> Void)] = [
            ("guidance", { $0.guidanceScale = .nan }), ("guidance", { $0.guidanceScale = .infinity }),
            ("guidance", { $0.guidanceScale = -1 }), ("guidance_rescale", { $0.guidanceRescale = 2 }),
            ("guidance_rescale", { $0.guidanceRescale = .nan }),
            ("steps", { $0.steps = 0 }), ("steps", { $0.steps = -1 }), ("steps", { $0.steps = 1001 }),
            ("count", { $0.count = 0 }), ("count", { $0.count = 10_001 }), ("batch_size", { $0.batchSizeOverride = 17 }),
            ("batch_size", { $0.batchSizeOverride = 0 }), ("width", { $0.width = 100_000 }), ("height", { $0.height = 0 }),
            ("width", { $0.width = 4096; $0.height = 4096 }),
            ("prompt", { $0.prompt = String(repeating: "a", count: 20_001) }),
            ("negative_prompt", { $0.negativePrompt = String(repeating: "b", count: 20_001) }),
        ]
        for (field, change) in cases {
            let error = problem(change)
            #expect(error?.field == field, "expected a \(field) error, got \(String(describing: error))")
            #expect(error.map { !$0.description.contains("\n") } ?? false)
        }
    }

    @Test func batchesSplitTheCountAndStepTheSeed() {
        var c = GenerationConfiguration(prompt: "a cat", seed: 7, count: 10)
        #expect(c.batches.map(\.count) == [4, 4, 2] && c.batches.map(\.seed) == [7, 8, 9])
        c.count = 3
        #expect(c.batches.map(\.count) == [3] && c.batches.map(\.seed) == [7], "up to 4 images are one diffusers batch")
        c.batchSizeOverride = 1
        #expect(c.batches.map(\.count) == [1, 1, 1] && c.batches.map(\.seed) == [7, 8, 9])
    }

    @Test func imagesAreHandedOutBatchByBatch() throws {
        let pipeline = try StableDiffusionPipeline.load(folder: Self.sd1)
        let request = GenerationConfiguration(prompt: "a cat", steps: 2, guidanceScale: 3, seed: 5, scheduler: .euler,
                                              count: 3, batchSize: 2)
        var made: [GeneratedImage] = []
        var batchesSeen = Set<Int>()
        try generateImages(request, batch: { try pipeline.generate($0, progress: $1) },
                           progress: { batch, _ in batchesSeen.insert(batch); return true }) { made.append($0) }
        #expect(made.map(\.index) == [0, 1, 2] && made.map(\.seed) == [5, 5, 6] && batchesSeen == [0, 1])
        var first = request; first.count = 2
        var second = request; second.count = 1; second.seed = 6
        let expected = try StableDiffusionPipeline.images(pipeline.generate(first)) + StableDiffusionPipeline.images(pipeline.generate(second))
        #expect(made.map(\.image.pixels) == expected.map(\.pixels))
        // One call is one batch: a larger one is refused rather than held in memory at once.
        var large = request; large.count = 17; large.batchSizeOverride = 16
        #expect(throws: GenerationRequestError.self) { try pipeline.generate(large) }
    }

    @Test func nonFiniteWeightsAreAnErrorNotABlackImage() throws {
        let pipeline = try StableDiffusionPipeline.load(folder: Self.sd1)
        let (_, weight) = pipeline.unet.parameterTensors().first { $0.path.hasSuffix("conv_in.weight") }!
        weight.data[0] = .nan
        let c = GenerationConfiguration(prompt: "a cat", steps: 2, guidanceScale: 3, seed: 1)
        #expect(throws: NonFiniteGeneration.self) { try pipeline.generate(c) }
    }

    @Test func sizesAreCheckedFromTheConfigsAlone() throws {
        let geometry = try PipelineGeometry.read(folder: ModelFolder(url: Self.sd1))
        let pipeline = try StableDiffusionPipeline.load(folder: Self.sd1)
        #expect(geometry == pipeline.geometry)
        var c = GenerationConfiguration(prompt: "a cat", width: geometry.vaeFactor * geometry.unetFactor + 1)
        #expect(throws: GenerationRequestError.self) { try geometry.validate(c) }
        c.width = 2 * geometry.vaeFactor * geometry.unetFactor
        try geometry.validate(c)
    }

    /// Random prompts — bytes, control characters, long words, huge lengths — are
    /// a valid request or a one-line error, and tokenize without a crash.
    @Test func promptFuzz() throws {
        let pipeline = try StableDiffusionPipeline.load(folder: Self.sd1)
        let scale = Int(ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"] ?? "") ?? 1
        var rng = SeededRandom(seed: 2026)
        let pieces = ["a", "cat", " ", "\n", "\t", "\u{0}", "\u{1B}[31m", "é", "猫", "🐈", ",", "<critter>", "!!!", "\u{FFFD}", "\u{200B}"]
        var errors = 0
        for n in 0..<(400 * scale) {
            var prompt = ""
            let kind = rng.nextInt(below: 4)
            let length = kind == 3 ? 20_000 + rng.nextInt(below: 2) : rng.nextInt(below: 300)
            if kind == 0 {
                let bytes = (0..<length).map { _ in UInt8(rng.nextInt(below: 256)) }
                prompt = String(decoding: bytes, as: UTF8.self)
            } else if kind == 1 {
                prompt = String(repeating: pieces[rng.nextInt(below: pieces.count)], count: length)
            } else {
                for _ in 0..<length { prompt += pieces[rng.nextInt(below: pieces.count)] }
            }
            let c = GenerationConfiguration(prompt: prompt)
            do { try c.validate() } catch {
                errors += 1
                #expect(!String(describing: error).isEmpty && !String(describing: error).contains("\n"), "case \(n)")
                continue
            }
            let count = pipeline.prompts.tokenCount(prompt)
            #expect(count >= 0, "case \(n)")
            if n % 50 == 0 { #expect(pipeline.prompts.encode([prompt]).hidden.allFinite, "case \(n)") }
        }
        print("prompt fuzz: \(400 * scale) cases, \(errors) refused")
    }
}
