import Foundation
import NestEngine
import NestDiffusion
import NestModels
import NestPersonalization

/// `nest-bench compare`: the Swift engine and PyTorch side by side, one case
/// at a time, each in its own process (so peak memory is per case): the
/// Swift child is `nest-bench case NAME`, the PyTorch one
/// `tools/bench_torch.py NAME`. Same configs (tools/bench_configs/), same
/// shapes, random weights, same thread count; best of N after a warm-up.
///
///   swift build -c release --product nest-bench
///   env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX HF_HUB_OFFLINE=1 \
///       .build/release/nest-bench compare [--cases a,b,…] [--repeats N] [--generate-repeats N] [--python python3] [--openvino]
/// Each side runs one warm-up call and reports the best of N more (N = 0: the
/// warm-up itself, the default for the whole-generation case). `--openvino`
/// adds OpenVINO columns (CompareTable.swift; needs `pip install openvino`).
let compareCases = ["sd15-unet-32", "sd15-unet-64", "sd15-unet-64-nested1", "sd15-unet-64-nested2", "sd15-unet-64-bf16", "sdxl-unet-64",
                    "vae-decode-256", "vae-decode-512", "clip-text", "train-step", "train-step-bf16",
                    "train-unet", "train-unet-bf16", "generate-20", "generate-20-bf16"]
/// Cases `nest-bench case` runs that `compare` does not (no PyTorch side).
let extraCases = ["sdxl-generate-1024", "vae-decode-1024", "sdxl-unet-128"]


let benchRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
func benchConfig(_ name: String) -> Data { try! Data(contentsOf: benchRoot.appendingPathComponent("tools/bench_configs/\(name)")) }

func currentRSSMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return 0 }
    return kb / 1024
}

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// One Swift case: build, warm up, best of `repeats`; prints a JSON line.
func runSwiftCase(_ name: String, repeats: Int) {
    let work = makeSwiftCase(name)
    // The warm-up call also counts the work of one call (GEMMs and convolutions,
    // as PyTorch's FlopCounterMode does: 1.61 TFLOP for sd15-unet-64 there).
    let before = FLOPCounter.count
    var t = seconds(work)
    let flops = FLOPCounter.count - before
    // With --repeats 0 the (cold) warm-up call is the measurement.
    if repeats > 0 { t = .infinity; for _ in 0..<repeats { t = min(t, seconds(work)) } }
    print(#"{"case": "\#(name)", "seconds": \#(t), "peak_rss_mib": \#(peakRSSMiB()), "flops": \#(flops)}"#)
}

func makeSwiftCase(_ name: String) -> () -> Void {
    var parts = name.split(separator: "-").map(String.init)
    // A "-bf16" suffix: the UNet's linear layers in bfloat16 (`storeWeightsAsBFloat16`).
    let bf16 = parts.last == "bf16"
    if bf16 { parts.removeLast() }
    if (parts[0] == "sd15" || parts[0] == "sdxl") && parts[1] == "unet" { return makeUNetCase(name, parts: parts, bf16: bf16) }
    if parts[0] == "vae" {
        let size = Int(parts[2])!
        let vae = try! AutoencoderKL(config: try! JSONDecoder().decode(AutoencoderKLConfig.self, from: benchConfig("sd_vae.json")))
        let z = Tensor.randn([1, size / 8, size / 8, 4], seed: 5)
        return { _ = vae.decode(z) }
    }
    if name == "clip-text" {
        let text = CLIPTextModel(config: try! JSONDecoder().decode(CLIPTextConfig.self, from: benchConfig("sd15_text.json")))
        var rng = SeededRandom(seed: 6)
        let ids = (0..<2).map { _ in (0..<77).map { _ in rng.nextInt(below: 49408) } }
        return { _ = text.forward(ids: ids) }
    }
    if parts == ["generate", "20"] { return makeGenerateCase(name, bf16: bf16) }
    if name == "sdxl-generate-1024" { return makeSDXLGenerateCase(name) }
    if parts == ["train", "step"] { return makeTrainStepCase(name, bf16: bf16) }
    if parts == ["train", "unet"] { return makeUNetTrainStepCase(name, bf16: bf16) }
    fatalError("nest-bench: unknown case \(name) (known: \(compareCases.joined(separator: ", ")))")
}

/// A UNet forward, optionally with one or two nested subjects bound ("-n1"/"-n2").
func makeUNetCase(_ name: String, parts: [String], bf16: Bool) -> () -> Void {
    let xl = parts[0] == "sdxl", size = Int(parts[2])!
    let config = try! UNet2DConditionConfig.decode(benchConfig(xl ? "sdxl_unet.json" : "sd15_unet.json"), name: name)
    let unet = UNet2DConditionModel(config: config, seed: 1)
    // Weights are stored narrower only once frozen (inference).
    if ProcessInfo.processInfo.environment["NEST_HALF_WEIGHTS"] == "1" { unet.freeze(); unet.storeWeightsAsHalf() }
    if bf16 || ProcessInfo.processInfo.environment["NEST_BF16"] == "1" {
        unet.freeze()
        let saved = unet.storeWeightsAsBFloat16()
        FileHandle.standardError.write(Data("bfloat16 weights: \(saved >> 20) MiB of float32 given back (BF16 hardware: \(BFloat16Weights.hardware))\n".utf8))
    }
    let x = Tensor.randn([2, size, size, 4], seed: 2)
    let context = Tensor.randn([2, 77, xl ? 2048 : 768], seed: 3)
    let added = xl ? (Tensor.randn([2, 1280], seed: 4), Tensor([1024, 1024, 0, 0, 1024, 1024, 1024, 1024, 0, 0, 1024, 1024], shape: [2, 6])) : nil
    if parts.count > 3 {
        let count = Int(String(parts[3].last!))!
        let subjects = [5, 9].prefix(count).enumerated().map { i, index -> NestedBindingSubject in
            let adapter = benchAdapter(unet, tokenWidth: 768, seed: UInt64(i))
            return NestedBindingSubject(adapter: adapter, tokens: Tensor.randn([1, 16, 768], seed: 10 + UInt64(i)), tokenIndex: [index, index])
        }
        let binding = try! NestedAttentionBinding.install(on: unet, subjects: subjects)
        return { _ = binding; _ = unet(sample: x, timestep: [999, 999], encoderHiddenStates: context, added: added) }
    }
    return { _ = unet(sample: x, timestep: [999, 999], encoderHiddenStates: context, added: added) }
}

/// A whole SD 1.5 generation at 512×512 (as tools/bench_torch.py's).
func makeGenerateCase(_ name: String, bf16: Bool) -> () -> Void {
    // A whole SD 1.5 generation at 512×512 (as tools/bench_torch.py's): text encoding,
    // 20 Euler steps at guidance 7.5, VAE decode; a small fixture tokenizer.
    let folder = benchRoot.appendingPathComponent("tools/bench_configs/sd15_pipeline")
    let text = CLIPTextModel(config: try! JSONDecoder().decode(CLIPTextConfig.self, from: benchConfig("sd15_text.json")))
    let prompts = try! PromptEncoder(tokenizers: [try! CLIPTokenizer.load(folder: folder.appendingPathComponent("tokenizer"))],
                                     encoders: [text])
    let unet = UNet2DConditionModel(config: try! UNet2DConditionConfig.decode(benchConfig("sd15_unet.json"), name: name), seed: 1)
    let vae = try! AutoencoderKL(config: try! JSONDecoder().decode(AutoencoderKLConfig.self, from: benchConfig("sd_vae.json")))
    let pipe = StableDiffusionPipeline(folder: try! ModelFolder(url: folder), prompts: prompts, unet: unet, vae: vae,
                                       schedulerConfig: try! SchedulerConfig.load(from: folder.appendingPathComponent("scheduler/scheduler_config.json")),
                                       forceZerosForEmptyPrompt: false)
    if bf16 {
        for module in [unet, vae, text] as [Module] { module.freeze(); module.storeWeightsAsBFloat16() }
    }
    let config = GenerationConfiguration(prompt: "a photo of a cat on the beach", steps: 20, guidanceScale: 7.5, seed: 1,
                                         width: 512, height: 512)
    return { _ = try! pipe.generate(config) }
}

/// An SDXL generation at 1024×1024, every model resident: for a generation's peak memory.
func makeSDXLGenerateCase(_ name: String) -> () -> Void {
    // SDXL at 1024×1024 (128² latents), both text encoders, UNet, VAE decode,
    // all resident as in a pipeline: for the peak memory of a generation
    // (one step reaches it; more steps only repeat the UNet call). Not in
    // `compare`'s default list: it takes minutes and PyTorch's side is not written.
    let folder = benchRoot.appendingPathComponent("tools/bench_configs/sd15_pipeline")
    let tokenizer = try! CLIPTokenizer.load(folder: folder.appendingPathComponent("tokenizer"))
    let textL = CLIPTextModel(config: try! JSONDecoder().decode(CLIPTextConfig.self, from: benchConfig("sd15_text.json")))
    let textG = CLIPTextModel(config: try! JSONDecoder().decode(CLIPTextConfig.self, from: benchConfig("sdxl_text2.json")),
                              withProjection: true)
    let prompts = try! PromptEncoder(tokenizers: [tokenizer, tokenizer], encoders: [textL, textG])
    let unet = UNet2DConditionModel(config: try! UNet2DConditionConfig.decode(benchConfig("sdxl_unet.json"), name: name), seed: 1)
    let vae = try! AutoencoderKL(config: try! JSONDecoder().decode(AutoencoderKLConfig.self, from: benchConfig("sd_vae.json")))
    let pipe = StableDiffusionPipeline(folder: try! ModelFolder(url: folder), prompts: prompts, unet: unet, vae: vae,
                                       schedulerConfig: try! SchedulerConfig.load(from: folder.appendingPathComponent("scheduler/scheduler_config.json")),
                                       forceZerosForEmptyPrompt: true)
    if ProcessInfo.processInfo.environment["NEST_HALF_WEIGHTS"] == "1" {
        let before = currentRSSMiB()
        let saved = ([unet, vae, textL, textG] as [Module]).reduce(0) { $0 + $1.storeWeightsAsHalf() }
        FileHandle.standardError.write(Data(String(format: "float16 weights: %.0f MiB of float32 given back; RSS %.0f -> %.0f MiB\n",
                                                   Double(saved) / 1048576, before, currentRSSMiB()).utf8))
    }
    let steps = Int(ProcessInfo.processInfo.environment["NEST_BENCH_STEPS"] ?? "1") ?? 1
    let config = GenerationConfiguration(prompt: "a photo of a cat on the beach", steps: steps, guidanceScale: 5, seed: 1,
                                         width: 1024, height: 1024)
    return { _ = try! pipe.generate(config) }
}

/// The training cases' fixed batch for the miniature world's UNet: 8 latents
/// of 16×16, text contexts, targets and timesteps.
struct WorldTrainingBatch {
    let x = Tensor.randn([8, 16, 16, 4], seed: 9), context = Tensor.randn([8, 32, 128], seed: 10)
    let target = Tensor.randn([8, 16, 16, 4], seed: 11)
    let timesteps: [Float] = {
        var rng = SeededRandom(seed: 12)
        return (0..<8).map { _ in Float(rng.nextInt(below: 1000)) }
    }()

    func loss(_ unet: UNet2DConditionModel) -> Tensor {
        F.mseLoss(unet(sample: x, timestep: timesteps, encoderHiddenStates: context), target)
    }
}

/// One AdamW step: `backward` with gradients recorded (with bfloat16 products
/// when `bf16`, `MixedPrecision`), then the update.
func optimizerStep(_ optimizer: AdamW, bf16: Bool, _ backward: @escaping () -> Void) -> () -> Void {
    {
        MixedPrecision.with(bfloat16: bf16) { Autograd.withGrad(backward) }
        optimizer.update(learningRate: 1e-4)
        optimizer.zeroGrad()
    }
}

func worldUNet(_ name: String) -> UNet2DConditionModel {
    UNet2DConditionModel(config: try! UNet2DConditionConfig.decode(benchConfig("world_unet.json"), name: name), seed: 1)
}

/// One training step of a nested adapter on the miniature world's frozen UNet
/// ("-bf16": bfloat16 products).
func makeTrainStepCase(_ name: String, bf16: Bool) -> () -> Void {
    // The miniature world's UNet, frozen; a nested adapter's projections trained
    // with AdamW on fixed encoder tokens.
    let unet = worldUNet(name)
    unet.freeze()
    let adapter = benchAdapter(unet, tokenWidth: 128, seed: 7)
    adapter.layers.unfreeze()
    let optimizer = AdamW(parameters: adapter.layers.trainableParameters, config: .init(learningRate: 1e-4))
    let tokens = Tensor.randn([8, 16, 128], seed: 8), batch = WorldTrainingBatch()
    return optimizerStep(optimizer, bf16: bf16) {
        let binding = try! NestedAttentionBinding.install(
            on: unet, subjects: [NestedBindingSubject(adapter: adapter, tokens: tokens, tokenIndex: Array(repeating: 3, count: 8))])
        let loss = batch.loss(unet)
        binding.uninstall()
        loss.backward()
    }
}

/// One AdamW step of the whole miniature-world UNet ("-bf16": bfloat16 products).
func makeUNetTrainStepCase(_ name: String, bf16: Bool) -> () -> Void {
    let unet = worldUNet(name)
    unet.unfreeze()
    let optimizer = AdamW(parameters: unet.trainableParameters, config: .init(learningRate: 1e-4))
    let batch = WorldTrainingBatch()
    return optimizerStep(optimizer, bf16: bf16) { batch.loss(unet).backward() }
}

func benchAdapter(_ unet: UNet2DConditionModel, tokenWidth: Int, seed: UInt64) -> PersonalizationAdapter {
    let config = AdapterConfig(kind: .nested, placeholderToken: "<s\(seed)>", classWord: "thing",
                               imageEncoder: .init(hiddenSize: 64, imageSize: 224),
                               resampler: .init(embeddingDim: 64, width: 64, outputDim: tokenWidth, depth: 1, heads: 1, headDim: 64, queries: 16),
                               layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers))
    return PersonalizationAdapter(config: config, seed: seed)
}

/// A child's JSON line; `precision` and `rel_l2_vs_torch` come from the OpenVINO side.
struct CaseResult: Decodable {
    let seconds: Double
    let peak_rss_mib: Double
    let flops: Double?
    let precision: String?
    let rel_l2_vs_torch: Double?
}

func runChild(_ executable: String, _ arguments: [String], environment: [String: String]) -> CaseResult? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let out = Pipe()
    process.standardOutput = out
    do { try process.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0, let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last else { return nil }
    return try? JSONDecoder().decode(CaseResult.self, from: Data(line.utf8))
}

func compare(arguments: [String]) {
    func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
    let cases = value("--cases").map { $0.split(separator: ",").map(String.init) } ?? compareCases
    let repeats = value("--repeats") ?? "3"
    let python = value("--python") ?? "/usr/bin/env"
    let pythonArgs = value("--python") == nil ? ["python3"] : []
    let script = benchRoot.appendingPathComponent("tools/bench_torch.py").path
    let threads = String(Threads.count)
    print("nest-bench compare: \(threads) thread(s) each; OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset"); best of \(repeats) after a warm-up")
    print(MachinePeaks.measure().summary)
    var openvino = arguments.contains("--openvino") ? OpenVINOSide(python: python, pythonArguments: pythonArgs, threads: threads) : nil
    if let side = openvino, !side.importable {
        print("nest-bench compare: --openvino: \((pythonArgs.first ?? python)) cannot import openvino (pip install openvino); its columns show —")
        openvino = nil
    }
    let table = CompareTable(openvino: arguments.contains("--openvino"))
    print(table.header)
    // A whole generation takes minutes: one timed call each unless asked for more.
    let generateRepeats = value("--generate-repeats") ?? "0"
    for name in cases {
        let n = name.hasPrefix("generate") ? generateRepeats : repeats
        let swift = runChild(CommandLine.arguments[0], ["case", name, "--repeats", n], environment: ["NEST_THREADS": threads])
        let torch = runChild(python, pythonArgs + [script, name, "--repeats", n, "--threads", threads], environment: ["HF_HUB_OFFLINE": "1"])
        print(table.row(name, swift: swift, torch: torch, ov: openvino?.run(name, repeats: n)))
        fflush(stdout)
    }
}
