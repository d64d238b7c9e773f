import ArgumentParser
import Foundation
import NestDiffusion
import NestIO
import NestModels

/// Prints what a weights file or an image holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the tensors of a safetensors file (or sharded index), or an image's size and text chunks.")

    @Argument(help: ArgumentHelp("A diffusers model folder (with model_index.json), a .safetensors file, a *.safetensors.index.json, a folder holding one, or a PNG/JPEG image.", valueName: "path"))
    var given: String?
    /// What to inspect (checked present unless --system).
    var path: String { given ?? "" }

    @Option(help: "With a single-file checkpoint: a diffusers folder of the same family whose configs to check every tensor against.")
    var config: String?

    @Option(help: "List at most this many tensors.")
    var limit: Int = 50

    @Flag(help: "Print the engine's configuration (its NEST_* environment knobs, as in effect) and the CPU's kernel features.")
    var system = false

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be zero or more, got \(limit)") }
        guard system || given != nil else { throw ValidationError("give a PATH to inspect, or --system") }
    }

    func run() throws {
        if system { printSystem() }
        guard given != nil else { return }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            fail("\(path): no such file or folder")
        }
        let lower = path.lowercased()
        let isWeights = !isDirectory.boolValue && !(lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg"))
        if config != nil && !isWeights { fail("--config is for single-file checkpoints; \(path) is not a weights file") }
        if isDirectory.boolValue && FileManager.default.fileExists(atPath: path + "/model_index.json") {
            inspectModelFolder()
            return
        }
        if !isDirectory.boolValue && (lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg")) {
            inspectImage()
        } else {
            try inspectWeights()
        }
    }

    /// Size and text chunks from the header alone: the pixels are never decoded.
    func inspectImage() {
        do {
            let info = try ImageFile.info(path: path)
            print("\(path): \(info.format) \(info.width)×\(info.height) RGB\(info.hasAlpha ? " + alpha" : "")")
            // Text chunks come from whoever made the file: never let them drive the terminal.
            for text in info.texts { print("  \(Escaped.text(text.key)): \(Escaped.text(text.value, limit: 4000))") }
            if let refusal = info.sizeRefusal { print("  note: too large to use as an input (\(refusal))") }
        } catch {
            fail(String(describing: error))
        }
    }

    /// Components, their classes, parameter counts, dtypes and the key config values.
    /// Every component is listed; a missing, truncated or corrupt one makes the command fail afterwards.
    func inspectModelFolder() {
        let folder: ModelFolder
        do { folder = try ModelFolder(url: URL(fileURLWithPath: path)) } catch { fail(String(describing: error)) }
        print("\(path): \(Escaped.text(folder.pipelineClass))")
        var problems: [String] = []
        for name in folder.components.keys.sorted() {
            let (library, className) = folder.components[name]!
            print("  \(Escaped.text(name)): \(Escaped.text(library)).\(Escaped.text(className))", terminator: "")
            do {
                print(try describeComponent(folder.url.appendingPathComponent(name)))
            } catch {
                print(" — error")
                problems.append("component '\(Escaped.text(name))': \(oneLine(error))")
            }
        }
        if let first = problems.first {
            let more = problems.count > 1 ? " (and \(problems.count - 1) more broken component(s))" : ""
            fail("\(path): \(first)\(more)")
        }
        printLoadingCost(folder.url)
    }

    /// The memory each precision's weights will hold once `nest generate` loaded them.
    func printLoadingCost(_ url: URL) {
        let costs: [PrecisionLoadingCost]
        do { costs = try StableDiffusionPipeline.loadingCostByPrecision(folder: url) } catch {
            print("  loading: cannot be estimated (\(oneLine(error)))")
            return
        }
        print("  loading holds (the weights; each step's activations come on top):")
        let options = ["float32": "default", "float16": "--half-weights", "bfloat16": "--bf16"]
        for total in costs {
            let parts = total.components.map { "\($0.name) \(byteText($0.totalBytes))" }
            let label = (options[total.precision] ?? total.precision).padding(toLength: 15, withPad: " ", startingAt: 0)
            print("    \(label) \(byteText(total.totalBytes)): \(byteText(total.inPlaceBytes)) used in place from the files, "
                  + "\(byteText(total.allocatedBytes)) copied (\(parts.joined(separator: ", ")))")
        }
    }

    static let configKeys = ["sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
                             "attention_head_dim", "num_attention_heads", "cross_attention_dim", "transformer_layers_per_block",
                             "use_linear_projection", "addition_embed_type", "latent_channels", "scaling_factor", "shift_factor",
                             "hidden_size", "num_hidden_layers", "projection_dim", "hidden_act", "image_size", "patch_size",
                             "prediction_type", "beta_schedule", "timestep_spacing", "_class_name"]

    /// The rest of a component's line and its config lines; throws when the component is unusable.
    func describeComponent(_ url: URL) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelConfigError("folder \(url.lastPathComponent)/ is missing")
        }
        var text = ""
        let jsonNames = ["config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json"]
        let present = jsonNames.filter { FileManager.default.fileExists(atPath: url.appendingPathComponent($0).path) }
        guard !present.isEmpty || FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path) else {
            throw ModelConfigError("\(url.path): no config file (\(jsonNames.joined(separator: ", ")))")
        }
        // A config.json marks a model component, which is nothing without its weights.
        if present.contains("config.json") {
            let file = try WeightFiles.locate(in: url)
            let weights = try SafeTensorsCollection(path: file.path)
            var total = 0
            var dtypes = Set<String>()
            for info in weights.tensors.values { total += info.elementCount; dtypes.insert(info.dtype.rawValue) }
            text += " — \(formatCount(total)) parameters, \(dtypes.sorted().joined(separator: "/")), \(file.lastPathComponent)"
        }
        for configName in present {
            let config = try readJSONObject(url.appendingPathComponent(configName))
            let values = Self.configKeys.compactMap { key -> String? in
                guard let v = config[key], !(v is NSNull) else { return nil }
                let rendered = (try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed]))
                    .flatMap { String(data: $0, encoding: .utf8) } ?? "\(v)"
                return "\(key)=\(Escaped.text(rendered))"
            }
            if !values.isEmpty { text += "\n      " + values.joined(separator: " ") }
        }
        return text
    }

    /// A JSON object from a regular file, with errors that name the file in one line.
    func readJSONObject(_ url: URL) throws -> [String: Any] {
        let data = try RegularFile.read(url, limit: 64 << 20)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelConfigError("\(url.path): not a JSON object")
        }
        return object
    }

    func oneLine(_ error: Error) -> String {
        String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    func inspectWeights() throws {
        let weights: SafeTensorsCollection
        do { weights = try SafeTensorsCollection(path: path) } catch { fail(String(describing: error)) }
        var total = 0
        var byType: [String: Int] = [:]
        for name in weights.names {
            let info = try weights.info(name)
            total += info.elementCount
            byType[info.dtype.rawValue, default: 0] += info.elementCount
        }
        print("\(path): \(weights.names.count) tensors, \(formatCount(total)) parameters (\(byType.sorted { $0.key < $1.key }.map { "\($0.key) \(formatCount($0.value))" }.joined(separator: ", ")))")
        for (key, value) in weights.metadata.sorted(by: { $0.key < $1.key }) {
            print("  metadata \(Escaped.text(key)): \(Escaped.text(value, limit: 4000))")
        }
        if weights.names.contains(where: SingleFileCheckpoint.isOriginalLayoutName) {
            describeSingleFile()
        } else if config != nil {
            fail("--config is for single-file checkpoints; \(path) holds no original-layout tensors")
        }
        for name in weights.names.prefix(limit) {
            let info = try weights.info(name)
            print("  \(Escaped.text(name))  \(info.dtype.rawValue) \(info.shape)")
        }
        if weights.names.count > limit { print("  ... \(weights.names.count - limit) more (use --limit)") }
    }
}

func formatCount(_ n: Int) -> String {
    if n >= 1_000_000_000 { return String(format: "%.2fB", Double(n) / 1e9) }
    if n >= 1_000_000 { return String(format: "%.2fM", Double(n) / 1e6) }
    if n >= 1_000 { return String(format: "%.1fK", Double(n) / 1e3) }
    return String(n)
}

extension Inspect {
    /// The family a single-file checkpoint was recognized as and, with --config, the whole-file check.
    func describeSingleFile() {
        do {
            let checkpoint = try SingleFileCheckpoint(path: path)
            print("  single-file \(checkpoint.family.rawValue) checkpoint: UNet, VAE, \(checkpoint.family.textEncoderTables.count) "
                  + "text encoder(s); \(checkpoint.crossAttentionLayers) cross-attention layers")
            guard let config else { return }
            let folder = try ModelFolder(url: URL(fileURLWithPath: config))
            let plan = try checkpoint.plan(try StableDiffusionPipeline.singleFileConfigs(checkpoint, folder: folder))
            let sources = [plan.unet, plan.vae] + plan.textEncoders
            let tensors = Set(sources.flatMap { $0.keys.values.map(\.original) }).count
            print("  every tensor fits the configs of \(config): \(tensors) tensors fill \(sources.map(\.keys.count).reduce(0, +)) parameters")
            for (reason, count) in plan.ignored.sorted(by: { $0.key < $1.key }) { print("  unused by design: \(count) × \(reason)") }
        } catch {
            fail(oneLine(error))
        }
    }

    func printSystem() {
        print("engine configuration (environment variables; values in effect):")
        let report = SystemReport.current
        for entry in report.settings {
            print("  \(entry.variable.padding(toLength: 27, withPad: " ", startingAt: 0)) \(entry.value.padding(toLength: 6, withPad: " ", startingAt: 0)) \(entry.meaning)")
        }
        let vector = report.avx512 ? "AVX-512" : report.avx2 ? "AVX2+FMA (no AVX-512)" : "portable Swift (neither AVX-512 nor AVX2+FMA)"
        print("kernels: \(vector), AVX512_BF16 \(report.avx512BFloat16 ? "yes" : "no")")
        if report.avx512BFloat16 {
            print(String(format: "bfloat16 dot products: %.2f× the float32 multiply-add rate (measured); training \"precision\": \"bf16\" %@",
                         report.bfloat16Rate, report.bfloat16Pays ? "multiplies in bfloat16" : "keeps float32 here"))
        }
    }
}


/// Bytes in GB, or MB below a gigabyte (decimal units, as file sizes).
func byteText(_ bytes: Int) -> String {
    bytes >= 1_000_000_000 ? String(format: "%.2f GB", Double(bytes) / 1e9) : String(format: "%.1f MB", Double(bytes) / 1e6)
}
