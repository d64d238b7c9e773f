import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import Testing

/// Single-file checkpoints in the original key layout (tools/make_single_file_fixtures.py,
/// checked there with diffusers' from_single_file): the same weights as the diffusers
/// folders they were written from, the same images as diffusers makes from the file, and
/// one-line errors naming the tensor for broken or mislabeled files.
@Suite struct SingleFileTests {
    struct Case: Decodable {
        let flavour, scheduler, prompt: String
        let seed: UInt64
        let steps: Int
        let negative_prompt: String?
        let guidance: Float
        let shape: [Int]
    }

    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    static let root = fixtures.appendingPathComponent("singlefile")
    static let cases: [Case] = try! JSONDecoder().decode([Case].self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))

    static func file(_ flavour: String) -> URL { root.appendingPathComponent("\(flavour).safetensors") }
    static func folder(_ flavour: String) -> URL { fixtures.appendingPathComponent("pipelines/\(flavour)") }

    static func tensors(_ module: Module) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: module.checkpointTensors().map { ($0.name, $0.tensor.array) })
    }

    @Test(arguments: ["sd1", "sd2", "sdxl"])
    func holdsTheFolderWeights(flavour: String) throws {
        let single = try StableDiffusionPipeline.load(singleFile: Self.file(flavour), config: Self.folder(flavour))
        let folder = try StableDiffusionPipeline.load(folder: Self.folder(flavour))
        #expect(single.prompts.isXL == (flavour == "sdxl"))
        var pairs: [(String, Module, Module)] = [("unet", single.unet, folder.unet), ("vae", single.vae, folder.vae)]
        for i in folder.prompts.encoders.indices {
            pairs.append(("text encoder \(i + 1)", single.prompts.encoders[i], folder.prompts.encoders[i]))
        }
        #expect(single.prompts.encoders.count == folder.prompts.encoders.count)
        for (name, a, b) in pairs {
            let (ta, tb) = (Self.tensors(a), Self.tensors(b))
            #expect(ta.keys.sorted() == tb.keys.sorted(), "\(flavour) \(name): parameter names differ")
            let differing = ta.keys.filter { ta[$0] != tb[$0] }.sorted()
            #expect(differing.isEmpty, "\(flavour) \(name): \(differing.count) parameter(s) differ, first \(differing.first ?? "")")
        }
    }

    @Test(arguments: ["sd1", "sd2", "sdxl"])
    func generatesDiffusersImage(flavour: String) throws {
        let c = Self.cases.first { $0.flavour == flavour }!
        let pipeline = try StableDiffusionPipeline.load(singleFile: Self.file(flavour), config: Self.folder(flavour))
        let config = GenerationConfiguration(prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps,
                                             guidanceScale: c.guidance, seed: c.seed,
                                             scheduler: SchedulerKind(rawValue: c.scheduler)!)
        let image = try pipeline.generate(config)
        let expected = try SafeTensorsFile(path: Self.root.appendingPathComponent("images.safetensors").path).tensor(flavour)
        #expect(image.shape == c.shape)
        guard image.count == expected.count else { return }
        var worst = 0, total = 0
        for i in 0..<image.count {
            let a = Int((image.data[i] * 255).rounded()), b = Int((expected.data[i] * 255).rounded())
            worst = max(worst, abs(a - b)); total += abs(a - b)
        }
        print("single-file parity \(flavour): max \(worst)/255, mean \(Double(total) / Double(image.count))/255")
        #expect(worst <= 1, "\(flavour): max |Δ| \(worst)/255 against diffusers' image from the same file")
    }

    /// The `flavour` single-file fixture rewritten with float16 tensors, in a temporary file.
    static func float16Copy(_ flavour: String) throws -> URL {
        let source = try SafeTensorsFile(path: file(flavour).path)
        var writer = SafeTensorsWriter()
        for name in source.names { writer.add(name, shape: try source.info(name).shape, floats: try source.floats(name), as: .f16) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(flavour)-f16-\(UUID().uuidString).safetensors")
        try writer.write(to: url.path)
        return url
    }

    @Test func float16FileHoldsTheRoundedWeights() throws {
        // Most shared files are float16: the SD 2 fixture (OpenCLIP's split and transposed tensors
        // included) rewritten in float16 loads to the folder's weights rounded to float16.
        let url = try Self.float16Copy("sd2")
        defer { try? FileManager.default.removeItem(at: url) }
        let single = try StableDiffusionPipeline.load(singleFile: url, config: Self.folder("sd2"))
        let folder = try StableDiffusionPipeline.load(folder: Self.folder("sd2"))
        for (a, b) in [(single.unet as Module, folder.unet as Module), (single.vae, folder.vae),
                       (single.prompts.encoders[0], folder.prompts.encoders[0])] {
            let (ta, tb) = (Self.tensors(a), Self.tensors(b))
            let differing = tb.keys.filter { ta[$0] != tb[$0]!.map { Float(Float16($0)) } }.sorted()
            #expect(differing.isEmpty, "\(differing.count) parameter(s) differ from the rounded folder weights, first \(differing.first ?? "")")
        }
    }

    @Test func halfWeightsAreReadNarrowFromTheFile() throws {
        // A float16 single file with --half-weights: each large weight is the file's
        // float16 bytes in place, and the image is the one narrowing afterwards gives.
        let url = try Self.float16Copy("sd1")
        defer { try? FileManager.default.removeItem(at: url) }
        let narrow = try StableDiffusionPipeline.load(singleFile: url, config: Self.folder("sd1"), precision: .float16)
        let wide = try StableDiffusionPipeline.load(singleFile: url, config: Self.folder("sd1"))
        wide.storeWeightsAsHalf()
        func below(_ m: Module) -> [Module] { [m] + m.children.flatMap { below($0.module) } }
        let layers = ([narrow.unet, narrow.vae] + narrow.prompts.encoders as [Module]).flatMap(below)
        let halves = layers.compactMap { ($0 as? Linear)?.halfWeight ?? ($0 as? Conv2d)?.halfWeight }
        #expect(!halves.isEmpty, "no weight narrowed")  // the tiny fixture has few of at least 4096 values
        let copied = halves.filter { !$0.usesFileInPlace }.count
        #expect(copied == 0, "\(copied) of \(halves.count) float16 weights were copied instead of read in place")
        let c = Self.cases.first { $0.flavour == "sd1" }!
        let config = GenerationConfiguration(prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps,
                                             guidanceScale: c.guidance, seed: c.seed,
                                             scheduler: SchedulerKind(rawValue: c.scheduler)!)
        #expect(try narrow.generate(config).array == wide.generate(config).array)
    }
}
