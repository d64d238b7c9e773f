import ArgumentParser
import Foundation
import NestPersonalization

/// Adapter commands.
struct Adapter: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring subject encoders made elsewhere into this project's adapter format.",
        subcommands: [AdapterImportCommand.self, AdapterMappingCommand.self])
}

struct AdapterImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import an IP-Adapter-lineage Nested Attention encoder (image_proj.* + ip_adapter.N.to_k_ip/to_v_ip) as OUT_DIR/adapter.json + adapter.safetensors.",
        discussion: "Keys are read through a declarative table (print the built-in one with `nest adapter mapping`); a key no rule matches is named and the import refused.")

    @Argument(help: ArgumentHelp("The encoder checkpoint (.safetensors).", valueName: "checkpoint"))
    var checkpoint: String

    @Option(help: "The base model folder the encoder was made for (its unet/config.json numbers the layers).")
    var model: String

    @Option(help: "The CLIP image encoder folder (default: the model's image_encoder/).")
    var imageEncoder: String?

    @Option(help: "The subject's placeholder token, e.g. \"<person>\".")
    var placeholder: String

    @Option(help: "The word whose embedding the placeholder starts from, e.g. person.")
    var classWord: String

    @Option(parsing: .unconditional, help: "The encoder's value normalization λ (vq_normalize_factor), stored as the adapter's default.")
    var valueNorm: Float?

    @Option(parsing: .unconditional, help: "The encoder's special_token_weight w, stored as the adapter's default (default 1).")
    var tokenWeight: Float = 1

    @Option(help: "A JSON import table whose rules are tried before the built-in ones.")
    var mapping: String?

    @Option(name: .shortAndLong, help: "The folder to write adapter.json and adapter.safetensors into.")
    var output: String

    @Flag(help: "Replace an existing adapter in the output folder.")
    var overwrite = false

    func run() throws {
        var table = ImportMapping.ipAdapterLineage
        if let mapping {
            do { table = try ImportMapping.load(from: URL(fileURLWithPath: mapping)).extended(with: table) } catch { fail("\(error)") }
        }
        let settings = AdapterImportSettings(placeholderToken: placeholder, classWord: classWord, valueNormalization: valueNorm,
                                             tokenWeight: tokenWeight, mapping: table)
        let written: AdapterImport.Written
        do {
            written = try AdapterImport.importFile(URL(fileURLWithPath: checkpoint), model: URL(fileURLWithPath: model),
                                                   imageEncoder: imageEncoder.map { URL(fileURLWithPath: $0) }, settings: settings,
                                                   to: URL(fileURLWithPath: output), overwrite: overwrite)
        } catch { fail("\(error)") }
        let c = written.config
        print("\(written.configPath): \(c.placeholderToken) (class word \(c.classWord)), \(c.resampler.queries) encoder tokens, "
              + "\(c.layers.count) cross-attention layers, value normalization \(c.defaults.valueNormalization.map { "\($0)" } ?? "none"), "
              + "token weight \(c.defaults.tokenWeight); \(written.tensors) tensors read")
    }
}

struct AdapterMappingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mapping",
        abstract: "Print the built-in import table as JSON (a starting point for --mapping).")

    func run() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(ImportMapping.ipAdapterLineage), as: UTF8.self))
    }
}
