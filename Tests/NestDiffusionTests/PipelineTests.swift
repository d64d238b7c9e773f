import Foundation
import NestDiffusion
import NestEngine
import NestIO
import Testing

/// Whole text-to-image runs against diffusers (tools/make_pipeline_fixtures.py):
/// same model folder, prompt, seed, scheduler and steps must give the same 8-bit image.
@Suite struct PipelineTests {
    struct Case: Decodable {
        let name, flavour, scheduler, prompt: String
        let karras: Bool
        let seed: UInt64
        let width, height: Int?
        let steps, count: Int
        let negative_prompt: String?
        let guidance, guidance_rescale: Float
        let shape: [Int]
    }

    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("pipelines")
    static let cases: [Case] = try! JSONDecoder().decode([Case].self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))
    static let images = try! SafeTensorsFile(path: root.appendingPathComponent("images.safetensors").path)
    static let pipelines = PipelineCache()

    final class PipelineCache: @unchecked Sendable {
        private var loaded: [String: StableDiffusionPipeline] = [:]
        private let lock = NSLock()
        func get(_ flavour: String) throws -> StableDiffusionPipeline {
            lock.lock(); defer { lock.unlock() }
            if let p = loaded[flavour] { return p }
            let p = try StableDiffusionPipeline.load(folder: PipelineTests.root.appendingPathComponent(flavour))
            loaded[flavour] = p
            return p
        }
    }

    @Test(arguments: PipelineTests.cases.map(\.name))
    func matchesDiffusers(name: String) throws {
        let c = Self.cases.first { $0.name == name }!
        let pipeline = try Self.pipelines.get(c.flavour)
        let config = GenerationConfiguration(
            prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps, guidanceScale: c.guidance,
            guidanceRescale: c.guidance_rescale, seed: c.seed, width: c.width, height: c.height,
            scheduler: SchedulerKind(rawValue: c.scheduler)!, karras: c.karras ? true : nil, count: c.count)
        let image = try pipeline.generate(config)
        let expected = try Self.images.tensor(c.name)
        #expect(image.shape == c.shape, "\(name): shape \(image.shape), diffusers \(c.shape)")
        guard image.count == expected.count else { return }
        // Compare the 8-bit images users see: round(x·255).
        var worst = 0, total = 0
        for i in 0..<image.count {
            let a = Int((image.data[i] * 255).rounded()), b = Int((expected.data[i] * 255).rounded())
            worst = max(worst, abs(a - b)); total += abs(a - b)
        }
        let mean = Double(total) / Double(image.count)
        print("pipeline parity \(name) \(c.flavour) \(c.scheduler)\(c.karras ? " karras" : ""): max \(worst)/255 mean \(String(format: "%.4f", mean))/255")
        #expect(worst <= 2 && mean <= 0.5, "\(name) (\(c.flavour) \(c.scheduler)): max |Δ| \(worst)/255, mean \(mean)/255")
    }
}
