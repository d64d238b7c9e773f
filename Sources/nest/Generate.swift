import ArgumentParser
import Foundation
import NestDiffusion
import NestIO
import NestModels
import NestPersonalization

extension SchedulerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}

/// A seed as the web UIs take it: a number, or -1 for a random one.
struct SeedArgument: ExpressibleByArgument {
    let value: UInt64?
    init?(argument: String) {
        if argument == "-1" { value = nil; return }
        guard let v = UInt64(argument) else { return nil }
        value = v
    }
}

/// Text-to-image from a diffusers folder.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a prompt with a Stable Diffusion model (SD 1.x, 2.x, SDXL): a diffusers folder or a single-file checkpoint.")

    @Option(help: "A diffusers model folder (model_index.json, unet/, vae/, text_encoder/, …) or a single-file checkpoint (FILE.safetensors in the original SD 1.x/2.x/SDXL layout).")
    var model: String?

    @Option(help: "With a single-file --model: a diffusers folder of the same family whose configs, tokenizers and scheduler to use (its weights are not read).")
    var config: String?

    @Option(name: .shortAndLong, help: "What to draw.")
    var prompt: String

    @Option(help: "What to steer away from (SDXL without one uses zero conditioning, as diffusers).")
    var negativePrompt: String?

    // Numbers are read unconditionally so that `--steps -1` is a negative number, not a missing value.
    @Option(parsing: .unconditional, help: "Denoising steps (1–1000).")
    var steps: Int = 25

    @Option(parsing: .unconditional, help: "Classifier-free guidance scale, 0–100 (≤ 1 turns guidance off).")
    var guidance: Float = 7.5

    @Option(parsing: .unconditional, help: "Guidance rescale φ in [0, 1].")
    var guidanceRescale: Float = 0

    @Option(parsing: .unconditional, help: "Random seed; -1 or none: a random one, printed and stored in the PNG.")
    var seed: SeedArgument?

    @Option(parsing: .unconditional, help: "Width in pixels (default: the model's native size; at most 4096, and 2048×2048 pixels in all).")
    var width: Int?

    @Option(parsing: .unconditional, help: "Height in pixels (default: the model's native size).")
    var height: Int?

    @Option(name: [.customLong("scheduler"), .customLong("sampler")],
            help: "Sampler: euler, euler-a, ddim, dpm++2m, lcm (default: the model folder's). The folder's config values are kept.")
    var scheduler: SchedulerKind?

    @Flag(inversion: .prefixedNo, help: "Karras sigmas (euler, dpm++2m); default: the folder's setting.")
    var karras: Bool?

    @Option(help: "Timestep spacing: leading, trailing (SDXL-Turbo/Lightning), linspace (default: the folder's setting).")
    var timestepSpacing: TimestepSpacing?

    @Option(parsing: .unconditional, help: "How many images (numbered files when more than one; at most 10000, each written as soon as its batch is done).")
    var count: Int = 1

    @Option(parsing: .unconditional, help: "Images denoised together (1–16; default: the count, up to 4). Batch k draws from seed + k.")
    var batchSize: Int?

    @Option(name: .shortAndLong, help: "Output PNG.")
    var output: String = "nest.png"

    @Flag(help: "Replace existing output files.")
    var overwrite = false

    @Option(help: "Image-to-image: start from this PNG or JPEG (its size, rounded down to the VAE factor, unless --width/--height resize it).")
    var initImage: String?

    @Option(parsing: .unconditional, help: "Image-to-image: how much of the schedule runs, 0–1 (default 0.8); int(steps × strength) steps run.")
    var strength: Double?

    @Option(help: "Weights variant to prefer, e.g. fp16.")
    var variant: String?

    @Flag(help: "Hold the UNet, text encoder and VAE weights as float16 in memory (half the memory, a few percent slower; lossless with fp16 weights).")
    var halfWeights = false

    @Flag(name: .customLong("bf16"), help: "Hold the weights as bfloat16 (half the memory; the output moves by under 1%), multiplied in bfloat16 with float32 sums where the CPU's AVX512_BF16 is faster than its float32 (nest inspect --system says), widened to float32 elsewhere; Winograd convolutions keep float32 products.")
    var bfloat16 = false

    @Option(name: .customLong("adapter"), help: "A subject adapter (NAME.json + NAME.safetensors); repeatable.")
    var adapters: [String] = []

    @Option(name: .customLong("subject"), help: "TOKEN=IMAGE: a photo of the subject for the adapter with that placeholder token; repeat for more photos or subjects.")
    var subjects: [String] = []

    @Option(parsing: .unconditional, help: "Nested Attention value normalization λ, 0–100 (rescale each subject value to λ·‖V_s‖).")
    var valueNorm: Float?

    @Option(parsing: .unconditional, help: "Nested Attention weight w on the attention the subject token receives (0 < w ≤ 100).")
    var tokenWeight: Float?

    @Option(help: "An IP-Adapter safetensors file (plain or Plus, original key layout).")
    var ipAdapter: String?

    @Option(name: .customLong("ip-image"), help: "Reference image for the IP-Adapter; repeatable.")
    var ipImages: [String] = []

    @Option(parsing: .unconditional, help: "IP-Adapter scale, 0–10.")
    var subjectScale: Float = 1

    @Option(name: .customLong("lora"), help: "FILE[:SCALE]: a LoRA (diffusers/PEFT or web-UI layout, UNet and text encoders) at SCALE (default 1); repeatable.")
    var loras: [String] = []

    @Option(name: .customLong("embedding"), help: "FILE[:TOKEN]: a textual-inversion embedding (diffusers or web-UI layout), used in prompts as TOKEN (default: the file's token or name); repeatable.")
    var embeddings: [String] = []

    @Option(help: "Write attention maps of the subject tokens (outer heatmaps and nested attention traced to the reference patches) as PNGs into this folder.")
    var saveAttention: String?

    @OptionGroup var engine: EngineOptions

    /// The request as the library takes it (the seed resolved, the init image read).
    func request(seed: UInt64, initImage: RGBImage? = nil) -> GenerationConfiguration {
        GenerationConfiguration(prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidanceScale: guidance,
                                guidanceRescale: guidanceRescale, seed: seed, width: width, height: height,
                                scheduler: scheduler, karras: karras, count: count, batchSize: batchSize,
                                initImage: initImage, strength: strength, timestepSpacing: timestepSpacing)
    }

    /// Everything that needs no model, in the library's own checks; errors name the options.
    func validate() throws {
        do {
            // The library's whole check of the request, less the subjects (read in `run`).
            // The init image is read in `run`; here only whether there is one matters.
            var generation = request(seed: 0)
            if initImage != nil { generation.strength = nil }
            try GenerationRequest(generation: generation, valueNormalization: valueNorm, tokenWeight: tokenWeight,
                                  ipScale: subjectScale).validate()
            if initImage != nil, let strength { try checkRange(strength, 0...1, field: "strength") }
        } catch let error as GenerationRequestError {
            throw ValidationError(optionMessage(error))
        }
        guard output.lowercased().hasSuffix(".png") else { throw ValidationError("--output must end in .png, got \(output)") }
        if let variant, variant.isEmpty || !variant.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) {
            throw ValidationError("--variant is a weight-file suffix such as fp16 (letters, digits, - and _), got \"\(Escaped.text(variant))\"")
        }
        if halfWeights && bfloat16 { throw ValidationError("--half-weights and --bf16 both narrow the weights: choose one") }
        if ipAdapter != nil && ipImages.isEmpty { throw ValidationError("--ip-adapter needs at least one --ip-image") }
        if ipAdapter == nil && !ipImages.isEmpty { throw ValidationError("--ip-image given but no --ip-adapter") }
        if saveAttention != nil && subjects.isEmpty {
            throw ValidationError("--save-attention records the subject tokens' attention, but no --subject was given")
        }
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
        let modelURL = URL(fileURLWithPath: model), configURL = config.map { URL(fileURLWithPath: $0) }
        // A single file takes its configs (and shipped adapters) from the --config folder.
        let configFolder: URL
        do { configFolder = try StableDiffusionPipeline.configFolder(model: modelURL, config: configURL) } catch {
            fail(cliMessage(error))
        }
        let seed = self.seed?.value ?? UInt64.random(in: 0..<(1 << 32))
        let inputs = GenerateInputs(command: self, model: configFolder.path, seed: seed)
        do {
            try inputs.request.generation.validate()
            try PipelineGeometry.read(folder: ModelFolder(url: configFolder)).validate(inputs.request.generation)
        } catch { fail(cliMessage(error)) }
        try checkOutputs(placeholders: inputs.request.subjects.map(\.placeholder))

        let loadStart = Date()
        let generator: Generator
        do {
            // Narrow weights are read narrow from a folder: no whole float32 model exists first.
            let line = LoadProgressLine()
            defer { line.finish() }
            let pipeline = try StableDiffusionPipeline.load(model: modelURL, config: configURL, variant: variant,
                                                            precision: halfWeights ? .float16 : bfloat16 ? .bfloat16 : .float32,
                                                            progress: line.update)
            generator = Generator(pipeline: pipeline, catalog: inputs.catalog)
            generator.notice = { warn($0) }
            if let ipAdapter { generator.ipAdapter = try IPAdapter.load(path: URL(fileURLWithPath: ipAdapter)) }
        } catch { fail(String(describing: error)) }
        // The request itself is checked by `generator.generate`, before any step.
        let pipeline = generator.pipeline, config = inputs.request.generation
        warnAboutLongPrompts(pipeline)
        let schedulerName = (try? pipeline.makeScheduler(config).kind.rawValue) ?? "?"
        let (height, width) = pipeline.geometry.size(of: config)
        let stepsRun = config.denoisingSteps
        note(String(format: "loaded %@ in %.1f s; %d×%d, %d steps, %@, seed %llu", model, Date().timeIntervalSince(loadStart),
                    width, height, stepsRun, schedulerName, seed))

        func parameters(_ made: GeneratedImage) -> String {
            var text = prompt
            if let negativePrompt { text += "\nNegative prompt: \(negativePrompt)" }
            let karrasText = (karras ?? false) ? " Karras" : ""
            text += "\nSteps: \(steps), Sampler: \(schedulerName)\(karrasText), CFG scale: \(guidance), Seed: \(made.seed), "
                + "Size: \(width)x\(height), Model: \(URL(fileURLWithPath: model).lastPathComponent)"
            if guidanceRescale > 0 { text += ", Guidance rescale: \(guidanceRescale)" }
            if config.initImage != nil { text += ", Denoising strength: \(config.effectiveStrength)" }
            for lora in inputs.request.loras {
                text += ", LoRA: \(URL(fileURLWithPath: lora.path).deletingPathExtension().lastPathComponent):\(lora.scale)"
            }
            if count > 1 { text += ", Batch size: \(made.batchSize), Batch pos: \(made.positionInBatch)" }
            return text + ", Generator: nest"
        }

        let bar = ProgressBar(total: stepsRun * config.batches.count)
        do {
            try generator.generate(inputs.request, progress: { batch, p in bar.update(batch * stepsRun + p.step); return true }) { made in
                if made.index == 0, let saveAttention {
                    let layers = try generator.writeAttentionMaps(of: inputs.request, image: made.image,
                                                                  to: URL(fileURLWithPath: saveAttention), overwrite: overwrite)
                    bar.finish()
                    note("wrote attention maps of \(layers) layers to \(saveAttention)")
                }
                let path = outputPaths[made.index]
                try ImageFile.writePNG(made.image, to: path, text: [("parameters", parameters(made))], overwrite: overwrite)
                bar.finish()
                print("wrote \(path)")
            }
        } catch {
            bar.finish()
            fail(cliMessage(error))
        }
        bar.finish()
    }

    /// Checks every output before spending minutes loading and generating.
    func checkOutputs(placeholders: [String]) throws {
        for path in outputPaths { try checkWritable(path) }
        if let saveAttention {
            do {
                try checkAttentionMapFolder(URL(fileURLWithPath: saveAttention), tokens: placeholders, overwrite: overwrite)
            } catch { fail("--save-attention: \(error)") }
        }
    }

    /// CLIP sees 75 tokens of a prompt; a longer one is warned about, not refused.
    func warnAboutLongPrompts(_ pipeline: StableDiffusionPipeline) {
        for (text, name) in [(prompt, "prompt"), (negativePrompt ?? "", "negative prompt")] {
            let tokens = pipeline.prompts.tokenCount(text)
            if tokens > 75 {
                warn("the \(name) is \(tokens) tokens; CLIP sees only the first 75, the rest is ignored (as diffusers truncates)")
            }
        }
    }

    /// Fails early, in one line, when `path` cannot be written.
    func checkWritable(_ path: String) throws {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isFolder) {
            if isFolder.boolValue { fail("\(path) is a folder; --output names a PNG file") }
            if !overwrite { fail("\(path) already exists; pass --overwrite to replace it") }
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            fail("\(path): folder \(folder) does not exist")
        }
        guard fm.isWritableFile(atPath: folder) else { fail("\(path): folder \(folder) is not writable") }
    }
}

/// A library error in the command line's words: request fields become their options.
func cliMessage(_ error: Error) -> String {
    if let e = error as? GenerationRequestError { return optionMessage(e) }
    return String(describing: error)
}

func optionMessage(_ e: GenerationRequestError) -> String {
    "--" + e.field.replacingOccurrences(of: "_", with: "-") + " " + e.problem
}
