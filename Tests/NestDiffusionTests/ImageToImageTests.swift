import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import Testing

/// Few-step sampling (LCM, trailing Euler, guidance 0 and 1) and image-to-image
/// against diffusers (tools/make_img2img_fixtures.py): the same 8-bit image.
@Suite struct ImageToImageTests {
    struct Case: Decodable {
        let name, flavour, prompt: String
        let scheduler, spacing, negative_prompt, init_image: String?
        let steps, count: Int
        let seed: UInt64
        let guidance: Float
        let strength: Double?
        let width, height: Int?
        let shape: [Int]
    }

    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("img2img")
    static let cases: [Case] = try! JSONDecoder().decode([Case].self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))
    static let images = try! SafeTensorsFile(path: root.appendingPathComponent("images.safetensors").path)
    static let pipelines = PipelineTests.PipelineCache()

    /// The "lcm" model folder: the sd1 fixture with the LCM UNet (guidance-scale
    /// embedding) and an LCMScheduler config, as the fixture script assembles it.
    static let lcmFolder: URL = {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("nest-lcm-\(UUID().uuidString)")
        try! fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let sd1 = PipelineTests.root.appendingPathComponent("sd1")
        for name in try! fm.contentsOfDirectory(atPath: sd1.path) where !["unet", "scheduler"].contains(name) {
            try! fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: sd1.appendingPathComponent(name))
        }
        try! fm.createSymbolicLink(at: dir.appendingPathComponent("unet"), withDestinationURL: root.appendingPathComponent("lcm_unet"))
        try! fm.createSymbolicLink(at: dir.appendingPathComponent("scheduler"), withDestinationURL: root.appendingPathComponent("lcm_scheduler"))
        return dir
    }()

    static func pipeline(_ flavour: String) throws -> StableDiffusionPipeline {
        if flavour == "lcm" { return try lcmPipeline.get() }
        return try pipelines.get(flavour)
    }

    static let lcmPipeline = LCMCache()
    final class LCMCache: @unchecked Sendable {
        private var loaded: StableDiffusionPipeline?
        private let lock = NSLock()
        func get() throws -> StableDiffusionPipeline {
            lock.lock(); defer { lock.unlock() }
            if let loaded { return loaded }
            let p = try StableDiffusionPipeline.load(folder: ImageToImageTests.lcmFolder)
            loaded = p
            return p
        }
    }

    static func initImage(_ name: String) throws -> RGBImage {
        try ImageFile.decode(path: root.appendingPathComponent(name).path)
    }

    static func configuration(_ c: Case) throws -> GenerationConfiguration {
        GenerationConfiguration(
            prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps, guidanceScale: c.guidance, seed: c.seed,
            width: c.width, height: c.height, scheduler: c.scheduler.map { SchedulerKind(rawValue: $0)! }, count: c.count,
            initImage: try c.init_image.map(initImage), strength: c.strength,
            timestepSpacing: c.spacing.map { TimestepSpacing(rawValue: $0)! })
    }

    @Test(arguments: ImageToImageTests.cases.map(\.name))
    func matchesDiffusers(name: String) throws {
        let c = Self.cases.first { $0.name == name }!
        let pipeline = try Self.pipeline(c.flavour)
        var stepsSeen = 0
        let image = try pipeline.generate(Self.configuration(c)) { stepsSeen = $0.stepCount; return true }
        let expected = try Self.images.tensor(c.name)
        #expect(image.shape == c.shape, "\(name): shape \(image.shape), diffusers \(c.shape)")
        #expect(stepsSeen == (c.strength.map { min(Int(Double(c.steps) * $0), c.steps) } ?? c.steps))
        guard image.count == expected.count else { return }
        var worst = 0, total = 0
        for i in 0..<image.count {
            let difference = abs(Int((image.data[i] * 255).rounded()) - Int(expected.data[i]))
            worst = max(worst, difference); total += difference
        }
        print("img2img parity \(name): max \(worst)/255 mean \(String(format: "%.4f", Double(total) / Double(image.count)))/255")
        #expect(worst <= 1, "\(name): max |Δ| \(worst)/255")
    }

    struct LCMSchedule: Decodable {
        let steps, original_inference_steps: Int
        let timesteps: [Int]
    }

    @Test func lcmTimestepsMatchDiffusers() throws {
        let schedules = try JSONDecoder().decode([LCMSchedule].self, from: Data(contentsOf: Self.root.appendingPathComponent("lcm_timesteps.json")))
        var config = try SchedulerConfig.load(from: Self.root.appendingPathComponent("lcm_scheduler/scheduler_config.json"))
        for s in schedules {
            config.originalInferenceSteps = s.original_inference_steps
            let scheduler = try makeScheduler(config: config, stepCount: s.steps)
            #expect(scheduler.kind == .lcm)
            #expect(scheduler.timesteps == s.timesteps.map(Float.init), "\(s.steps) of \(s.original_inference_steps)")
        }
        config.originalInferenceSteps = 50
        #expect(throws: ModelConfigError.self) { try makeScheduler(config: config, stepCount: 51) }
        config.originalInferenceSteps = 1001
        #expect(throws: ModelConfigError.self) { try makeScheduler(config: config) }
    }

    func problem(_ change: (inout GenerationConfiguration) throws -> Void) throws -> GenerationRequestError? {
        var c = GenerationConfiguration(prompt: "a cat", steps: 4, initImage: try Self.initImage("init_32x32.png"), strength: 0.5)
        try change(&c)
        do {
            try c.validate()
            try Self.pipeline("sd1").validate(c)
            return nil
        } catch { return error as? GenerationRequestError }
    }

    @Test func badImageToImageRequestsAreRefusedByField() throws {
        #expect(try problem { _ in } == nil)
        #expect(try problem { $0.strength = nil } == nil, "the default strength")
        let wide = try RGBImage(width: 5000, height: 8, pixels: [UInt8](repeating: 0, count: 5000 * 8 * 3))
        let odd = try RGBImage(width: 34, height: 32, pixels: [UInt8](repeating: 0, count: 34 * 32 * 3))
        let cases: [(String, (inout GenerationConfiguration) -> Void)] = [
            ("strength", { $0.strength = 1.5 }), ("strength", { $0.strength = -0.1 }), ("strength", { $0.strength = .nan }),
            ("strength", { $0.strength = 0.2 }),  // int(4 × 0.2) = 0 steps
            ("strength", { $0.strength = 0 }),
            ("init_image", { $0.initImage = nil }),  // a strength without an image
            ("init_image", { $0.initImage = wide }),
            ("init_image", { $0.initImage = odd }),  // 34 rounds to 34, not a multiple of 4
        ]
        for (field, change) in cases {
            let error = try problem(change)
            #expect(error?.field == field, "expected a \(field) error, got \(String(describing: error))")
            #expect(error.map { !$0.description.contains("\n") } ?? false)
        }
        // Given a size, the image is resized to it instead.
        #expect(try problem { $0.initImage = odd; $0.width = 32 } == nil)
        #expect(try problem { $0.initImage = wide; $0.width = 64; $0.height = 32 } == nil)
    }

    @Test func theScheduleIsCutAsDiffusersCutsIt() {
        var c = GenerationConfiguration(prompt: "a cat", steps: 10)
        #expect(c.firstStep == 0 && c.denoisingSteps == 10, "text-to-image runs every step")
        c.initImage = try? RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 9, count: 48))
        for (strength, first) in [(0.3, 7), (0.75, 3), (0.7, 3), (1.0, 0), (0.8, 2), (0.05, 10)] {
            c.strength = strength
            #expect(c.firstStep == first, "strength \(strength)")
        }
        c.strength = nil
        #expect(c.firstStep == 2, "default strength 0.8")
    }

    @Test func lanczosResizeMatchesPillow() throws {
        let image = try Self.initImage("init_33x49.png")
        // Pillow's separable passes run horizontal first (its Resample.c); Pillow 13 runs
        // some mixed resizes (wider and shorter) vertical first, which rounds the 8-bit
        // intermediate differently: those agree to one level.
        for (width, height, tolerance) in [(32, 48, 0), (70, 90, 0), (17, 60, 0), (40, 24, 1)] {
            let expected = try Self.images.tensor("lanczos_\(width)x\(height)").array.map { Int($0) }
            let resized = pillowResize(image.pixels, width: image.width, height: image.height, outWidth: width, outHeight: height,
                                       filter: .lanczos)
            let worst = zip(resized, expected).map { abs(Int($0) - $1) }.max() ?? 0
            #expect(resized.count == expected.count && worst <= tolerance, "\(width)×\(height): max |Δ| \(worst)")
        }
        let same = StableDiffusionPipeline.imageTensor(image, height: 49, width: 33)
        #expect(same.array == image.floats(range: -1...1), "an image of the right size is not resampled")
    }
}
