import ArgumentParser
import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization

extension SchedulerKind: ExpressibleByArgument {}

/// Text-to-image from a diffusers folder.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a prompt with a Stable Diffusion model folder (SD 1.x, 2.x, SDXL).")

    @Option(help: "A diffusers model folder (model_index.json, unet/, vae/, text_encoder/, …).")
    var model: String?

    @Option(name: .shortAndLong, help: "What to draw.")
    var prompt: String

    @Option(help: "What to steer away from (SDXL without one uses zero conditioning, as diffusers).")
    var negativePrompt: String?

    @Option(help: "Denoising steps.")
    var steps: Int = 25

    @Option(help: "Classifier-free guidance scale (1 turns guidance off).")
    var guidance: Float = 7.5

    @Option(help: "Guidance rescale φ in [0, 1].")
    var guidanceRescale: Float = 0

    @Option(help: "Random seed (default: a random one, printed and stored in the PNG).")
    var seed: UInt64?

    @Option(help: "Width in pixels (default: the model's native size).")
    var width: Int?

    @Option(help: "Height in pixels (default: the model's native size).")
    var height: Int?

    @Option(help: "Sampler: euler, euler-a, ddim, dpm++2m (default: the model folder's). The folder's config values are kept.")
    var scheduler: SchedulerKind?

    @Flag(inversion: .prefixedNo, help: "Karras sigmas (euler, dpm++2m); default: the folder's setting.")
    var karras: Bool?

    @Option(help: "How many images (numbered files when more than one).")
    var count: Int = 1

    @Option(name: .shortAndLong, help: "Output PNG.")
    var output: String = "nest.png"

    @Flag(help: "Replace existing output files.")
    var overwrite = false

    @Option(help: "Weights variant to prefer, e.g. fp16.")
    var variant: String?

    @Flag(help: "Hold the UNet, text encoder and VAE weights as float16 in memory (half the memory, a few percent slower; lossless with fp16 weights).")
    var halfWeights = false

    @Flag(name: .customLong("bf16"), help: "Hold the weights as bfloat16 and multiply in bfloat16 with float32 sums where the CPU has AVX512_BF16 (half the memory, faster; the output moves by under 1%); Winograd convolutions keep float32 products.")
    var bfloat16 = false

    @Option(name: .customLong("adapter"), help: "A subject adapter (NAME.json + NAME.safetensors); repeatable.")
    var adapters: [String] = []

    @Option(name: .customLong("subject"), help: "TOKEN=IMAGE: a photo of the subject for the adapter with that placeholder token; repeat for more photos or subjects.")
    var subjects: [String] = []

    @Option(help: "Nested Attention value normalization λ (rescale each subject value to λ·‖V_s‖).")
    var valueNorm: Float?

    @Option(help: "Nested Attention weight w on the attention the subject token receives.")
    var tokenWeight: Float?

    @Option(help: "An IP-Adapter safetensors file (plain or Plus, original key layout).")
    var ipAdapter: String?

    @Option(name: .customLong("ip-image"), help: "Reference image for the IP-Adapter; repeatable.")
    var ipImages: [String] = []

    @Option(help: "IP-Adapter scale.")
    var subjectScale: Float = 1

    @Option(help: "Write attention maps of the subject tokens (outer heatmaps and nested attention traced to the reference patches) as PNGs into this folder.")
    var saveAttention: String?

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard steps > 0 else { throw ValidationError("--steps must be positive, got \(steps)") }
        guard count > 0 else { throw ValidationError("--count must be positive, got \(count)") }
        guard (0...1).contains(guidanceRescale) else { throw ValidationError("--guidance-rescale must be in [0, 1], got \(guidanceRescale)") }
        if let width, width <= 0 { throw ValidationError("--width must be positive, got \(width)") }
        if let height, height <= 0 { throw ValidationError("--height must be positive, got \(height)") }
        guard output.lowercased().hasSuffix(".png") else { throw ValidationError("--output must end in .png, got \(output)") }
    }

    /// The files this run will write: `out.png`, or `out-1.png` … `out-N.png`.
    var outputPaths: [String] {
        if count == 1 { return [output] }
        let stem = String(output.dropLast(4))
        return (1...count).map { "\(stem)-\($0).png" }
    }

    func run() throws {
        try engine.apply()
        let model = DefaultModel.resolve(self.model)
        let adapters = adapterPaths(model: model)
        // Check every output path before spending minutes generating.
        for path in outputPaths { try checkWritable(path) }

        let loadStart = Date()
        let pipeline: StableDiffusionPipeline
        do { pipeline = try StableDiffusionPipeline.load(folder: URL(fileURLWithPath: model), variant: variant) } catch {
            fail(String(describing: error))
        }
        if halfWeights && bfloat16 { fail("--half-weights and --bf16 both narrow the weights: choose one") }
        if halfWeights {
            for module in [pipeline.unet, pipeline.vae] + pipeline.prompts.encoders as [Module] { module.storeWeightsAsHalf() }
        }
        if bfloat16 {
            for module in [pipeline.unet, pipeline.vae] + pipeline.prompts.encoders as [Module] { module.storeWeightsAsBFloat16() }
        }
        let seed = self.seed ?? UInt64.random(in: 0..<(1 << 32))
        let config = GenerationConfiguration(prompt: prompt, negativePrompt: negativePrompt, steps: steps,
                                             guidanceScale: guidance, guidanceRescale: guidanceRescale, seed: seed,
                                             width: width, height: height, scheduler: scheduler, karras: karras, count: count)
        do { try pipeline.validate(config) } catch { fail(String(describing: error)) }
        for (text, name) in [(prompt, "prompt"), (negativePrompt ?? "", "negative prompt")] {
            let tokens = pipeline.prompts.tokenCount(text)
            if tokens > 75 {
                warn("the \(name) is \(tokens) tokens; CLIP sees only the first 75, the rest is ignored (as diffusers truncates)")
            }
        }
        let schedulerName = (try? pipeline.makeScheduler(config).kind.rawValue) ?? "?"
        let width = config.width ?? pipeline.defaultSize.width, height = config.height ?? pipeline.defaultSize.height
        note(String(format: "loaded %@ in %.1f s; %d×%d, %d steps, %@, seed %llu", model, Date().timeIntervalSince(loadStart),
                    width, height, steps, schedulerName, seed))

        let personalized = try personalize(pipeline, adapters: adapters)
        let bar = ProgressBar(total: steps)
        let images: Tensor
        do {
            let report = { (progress: GenerationProgress) -> Bool in bar.update(progress.step); return true }
            if let (pipe, subjects, ipPictures) = personalized {
                var options: [String: NestedAttentionOptions] = [:]
                for (token, adapter) in pipe.adapters {
                    var o = NestedAttentionOptions(valueNormalization: adapter.config.defaults.valueNormalization,
                                                   tokenWeight: adapter.config.defaults.tokenWeight)
                    if let valueNorm { o.valueNormalization = valueNorm }
                    if let tokenWeight { o.tokenWeight = tokenWeight }
                    options[token] = o
                }
                pipe.recordAttention = saveAttention != nil
                images = try pipe.generate(config, subjects: subjects, options: options, ipImages: ipPictures,
                                           ipScale: subjectScale, progress: report)
                if let saveAttention {
                    let first = try StableDiffusionPipeline.images(images.slice(axis: 0, 0..<1))[0]
                    try writeAttentionMaps(pipe.recorders, image: first, references: pipe.referenceTraces(subjects),
                                           to: URL(fileURLWithPath: saveAttention), overwrite: overwrite)
                    note("wrote attention maps of \(pipe.recorders.count) layers to \(saveAttention)")
                }
            } else {
                images = try pipeline.generate(config, progress: report)
            }
        } catch {
            bar.finish()
            fail(String(describing: error))
        }
        bar.finish()

        var parameters = prompt
        if let negativePrompt { parameters += "\nNegative prompt: \(negativePrompt)" }
        let karrasText = (karras ?? false) ? " Karras" : ""
        parameters += "\nSteps: \(steps), Sampler: \(schedulerName)\(karrasText), CFG scale: \(guidance), Seed: \(seed), "
            + "Size: \(width)x\(height), Model: \(URL(fileURLWithPath: model).lastPathComponent)"
        if guidanceRescale > 0 { parameters += ", Guidance rescale: \(guidanceRescale)" }
        parameters += ", Generator: nest"
        let pictures: [RGBImage]
        do { pictures = try StableDiffusionPipeline.images(images) } catch { fail(String(describing: error)) }
        for (i, (picture, path)) in zip(pictures, outputPaths).enumerated() {
            let text = count > 1 ? parameters + ", Batch index: \(i)" : parameters
            do { try ImageFile.writePNG(picture, to: path, text: [("parameters", text)], overwrite: overwrite) } catch {
                fail(String(describing: error))
            }
            print("wrote \(path)")
        }
    }

    /// The adapters to load: every --adapter, plus the model folder's own adapter
    /// for each --subject token no --adapter covers. Fails in one line, before
    /// any model is loaded, when a subject's token has no adapter at all.
    func adapterPaths(model: String) -> [String] {
        var paths = adapters
        let shipped = DefaultModel.adapters(in: model)
        var covered = Set<String>()
        for path in paths {
            // Either file of the pair may be named, or the stem.
            let config = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("json")
            guard FileManager.default.fileExists(atPath: config.path) else {
                fail("\(path): adapter config \(config.lastPathComponent) not found")
            }
            do { covered.insert(try AdapterConfig.load(from: config).placeholderToken) } catch { fail(String(describing: error)) }
        }
        for spec in subjects {
            guard let eq = spec.firstIndex(of: "=") else { continue }
            let token = String(spec[..<eq])
            if covered.contains(token) { continue }
            guard let path = shipped[token] else {
                let offered = shipped.keys.sorted().joined(separator: ", ")
                fail("--subject \(token): no adapter for this token; pass --adapter FILE.json"
                     + (offered.isEmpty ? "" : " (the model's own adapters are for \(offered))"))
            }
            paths.append(path)
            covered.insert(token)
        }
        return paths
    }

    /// Loads adapters and subject images; nil when the run is plain text-to-image.
    func personalize(_ pipeline: StableDiffusionPipeline, adapters: [String]) throws -> (PersonalizedPipeline, [Subject], [RGBImage])? {
        if adapters.isEmpty && subjects.isEmpty && ipAdapter == nil && ipImages.isEmpty { return nil }
        if ipAdapter != nil && ipImages.isEmpty { fail("--ip-adapter needs at least one --ip-image") }
        if ipAdapter == nil && !ipImages.isEmpty { fail("--ip-image given but no --ip-adapter") }
        let pipe: PersonalizedPipeline
        do {
            pipe = try PersonalizedPipeline(base: pipeline)
            for path in adapters { try pipe.addAdapter(path: path) }
            if let ipAdapter { pipe.ipAdapter = try IPAdapter.load(path: URL(fileURLWithPath: ipAdapter)) }
        } catch { fail(String(describing: error)) }
        var images: [String: [RGBImage]] = [:], order: [String] = []
        for spec in subjects {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                fail("--subject must look like TOKEN=IMAGE, got \"\(spec)\"")
            }
            let token = String(spec[..<eq]), path = String(spec[spec.index(after: eq)...])
            if images[token] == nil { order.append(token) }
            images[token, default: []].append(readImage(path))
        }
        for token in pipe.adapters.keys where images[token] == nil {
            fail("adapter \(token) is loaded but no --subject \(token)=IMAGE was given")
        }
        return (pipe, order.map { Subject(placeholder: $0, images: images[$0]!) }, ipImages.map(readImage))
    }

    func readImage(_ path: String) -> RGBImage {
        do {
            let image = try ImageFile.decode(path: path)
            if min(image.width, image.height) < 64 {
                warn("\(path) is only \(image.width)×\(image.height); subject photos under 64 px carry little identity")
            }
            return image
        } catch { fail(String(describing: error)) }
    }

    /// Fails early, in one line, when `path` cannot be written.
    func checkWritable(_ path: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) && !overwrite { fail("\(path) already exists; pass --overwrite to replace it") }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            fail("\(path): folder \(folder) does not exist")
        }
        guard fm.isWritableFile(atPath: folder) else { fail("\(path): folder \(folder) is not writable") }
    }
}

/// Step, it/s and ETA on one redrawn line when stderr is a terminal; plain
/// lines every few steps otherwise (logs, pipes).
final class ProgressBar {
    let total: Int
    let start = Date()
    let interactive = isatty(2) != 0
    var lastPrinted = 0

    init(total: Int) { self.total = total }

    func update(_ step: Int, suffix: String = "") {
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(step) / max(elapsed, 1e-9)
        let eta = Double(total - step) / max(rate, 1e-9)
        if interactive {
            let width = 30, filled = width * step / max(total, 1)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = String(format: "\r%@ %d/%d  %.2f it/s  ETA %.0f s  ", bar, step, total, rate, eta) + suffix + " "
            FileHandle.standardError.write(line.data(using: .utf8)!)
        } else if step == total || step - lastPrinted >= max(1, total / 10) {
            lastPrinted = step
            note(String(format: "step %d/%d  %.2f it/s  ETA %.0f s  ", step, total, rate, eta) + suffix)
        }
    }

    func finish() {
        if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) }
    }
}

func note(_ message: String) { FileHandle.standardError.write((message + "\n").data(using: .utf8)!) }
func warn(_ message: String) { FileHandle.standardError.write(("nest: warning: " + message + "\n").data(using: .utf8)!) }
