import Foundation
import NestPersonalization

/// The miniature world's trained model, shipped inside the build: SwiftPM
/// copies `Sources/nest/Resources/world` next to the executable (the
/// `NestedAttention_nest.resources` bundle), so `nest generate` works with
/// no download and no `--model`.
enum DefaultModel {
    static let name = "world"

    static var folder: URL? {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("NestedAttention_nest.resources/\(name)"),
            executable.deletingLastPathComponent().appendingPathComponent("NestedAttention_nest.resources/\(name)"),
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("model_index.json").path) }
    }

    /// The model folder to use: the one given, else the embedded one.
    static func resolve(_ given: String?) -> String {
        if let given { return given }
        guard let folder else {
            fail("no --model given and the embedded world model is missing from this build; pass --model DIR (a diffusers folder)")
        }
        return folder.path
    }

    /// Adapters shipped in a model folder's `adapters/` (NAME.json + NAME.safetensors), by placeholder token.
    static func adapters(in model: String, kind: AdapterConfig.Kind = .nested) -> [String: String] {
        AdapterCatalog.shipped(in: URL(fileURLWithPath: model), kind: kind)
    }
}
