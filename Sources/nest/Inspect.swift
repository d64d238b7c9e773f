import ArgumentParser
import Foundation
import NestEngine
import NestIO
import NestModels

/// Prints what a weights file or an image holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the tensors of a safetensors file (or sharded index), or an image's size and text chunks.")

    @Argument(help: "A diffusers model folder (with model_index.json), a .safetensors file, a *.safetensors.index.json, a folder holding one, or a PNG/JPEG image.")
    var path: String

    @Option(help: "List at most this many tensors.")
    var limit: Int = 50

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            fail("\(path): no such file or folder")
        }
        let lower = path.lowercased()
        if isDirectory.boolValue && FileManager.default.fileExists(atPath: path + "/model_index.json") {
            try inspectModelFolder()
            return
        }
        if !isDirectory.boolValue && (lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg")) {
            try inspectImage()
        } else {
            try inspectWeights()
        }
    }

    func inspectImage() throws {
        do {
            let image = try ImageFile.decode(path: path)
            print("\(path): \(image.width)×\(image.height) RGB\(image.alpha == nil ? "" : " + alpha")")
            if path.lowercased().hasSuffix(".png") {
                for (key, value) in try ImageFile.readPNGText(path: path) { print("  \(key): \(value)") }
            }
        } catch {
            fail(String(describing: error))
        }
    }

    /// Components, their classes, parameter counts, dtypes and the key config values.
    func inspectModelFolder() throws {
        let folder: ModelFolder
        do { folder = try ModelFolder(url: URL(fileURLWithPath: path)) } catch { fail(String(describing: error)) }
        print("\(path): \(folder.pipelineClass)")
        let keys = ["sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
                    "attention_head_dim", "num_attention_heads", "cross_attention_dim", "transformer_layers_per_block",
                    "use_linear_projection", "addition_embed_type", "latent_channels", "scaling_factor", "shift_factor",
                    "hidden_size", "num_hidden_layers", "projection_dim", "hidden_act", "image_size", "patch_size",
                    "prediction_type", "beta_schedule", "timestep_spacing", "_class_name"]
        for name in folder.components.keys.sorted() {
            let (library, className) = folder.components[name]!
            let url = folder.url.appendingPathComponent(name)
            var line = "  \(name): \(library).\(className)"
            if let file = try? WeightFiles.locate(in: url), let weights = try? SafeTensorsCollection(path: file.path) {
                var total = 0
                var dtypes = Set<String>()
                for tensor in weights.names {
                    if let info = try? weights.info(tensor) { total += info.elementCount; dtypes.insert(info.dtype.rawValue) }
                }
                line += " — \(formatCount(total)) parameters, \(dtypes.sorted().joined(separator: "/")), \(file.lastPathComponent)"
            }
            print(line)
            for configName in ["config.json", "scheduler_config.json"] {
                guard let data = FileManager.default.contents(atPath: url.appendingPathComponent(configName).path),
                      let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
                let values = keys.compactMap { key -> String? in
                    guard let v = config[key], !(v is NSNull) else { return nil }
                    let text = (try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed]))
                        .flatMap { String(data: $0, encoding: .utf8) } ?? "\(v)"
                    return "\(key)=\(text)"
                }
                if !values.isEmpty { print("      " + values.joined(separator: " ")) }
            }
        }
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
        for (key, value) in weights.metadata.sorted(by: { $0.key < $1.key }) { print("  metadata \(key): \(value)") }
        for name in weights.names.prefix(limit) {
            let info = try weights.info(name)
            print("  \(name)  \(info.dtype.rawValue) \(info.shape)")
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
