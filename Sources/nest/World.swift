import ArgumentParser
import Foundation
import NestIO
import NestWorld

/// The miniature world: datasets for training and contact sheets for looking.
struct World: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render the procedural miniature world (critters and bots) as training data.",
        subcommands: [WorldDatasetCommand.self, WorldModelCommand.self])
}

struct WorldDatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Write images/, manifest.jsonl (with same-identity references) and identities.json, deterministic from a seed.")

    @Option(name: .shortAndLong, help: "Output folder (must not exist yet).")
    var output: String

    @Option(help: "Identities per domain (critter, bot).")
    var identities: Int = 16

    @Option(help: "Scenes per identity (at least 2: each image's references are the identity's other scenes).")
    var contexts: Int = 8

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "Placeholder token for captions (default: the class word, for base-model training).")
    var placeholder: String?

    @Option(help: "Only this domain (critter or bot); default both.")
    var domain: String?

    @Flag(help: "Also write preview.png, a contact sheet of the first images.")
    var preview = false

    func validate() throws {
        guard identities > 0 else { throw ValidationError("--identities must be positive, got \(identities)") }
        guard contexts >= 2 else { throw ValidationError("--contexts must be at least 2, got \(contexts)") }
    }

    func run() throws {
        let folder = URL(fileURLWithPath: output)
        if FileManager.default.fileExists(atPath: folder.path) {
            fail("\(output) already exists; choose a new folder (nothing was overwritten)")
        }
        var domains = Domain.allCases
        if let name = domain {
            guard let d = Domain(rawValue: name) else { fail("--domain: unknown domain '\(name)' (critter or bot)") }
            domains = [d]
        }
        let records: [WorldDataset.Record]
        do {
            records = try WorldDataset.write(to: folder, identitiesPerDomain: identities, contextsPerIdentity: contexts,
                                             seed: seed, placeholder: placeholder, domains: domains)
        } catch { fail(String(describing: error)) }
        if preview {
            let images = try records.prefix(48).map { try ImageFile.decode(path: folder.appendingPathComponent($0.image).path) }
            try ImageFile.writePNG(ContactSheet.make(images, columns: 8), to: folder.appendingPathComponent("preview.png").path)
        }
        print("wrote \(records.count) images and manifest.jsonl to \(output)")
    }
}

struct WorldModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Write the world's untrained model folder (diffusers layout: configs and tokenizer, no weights).")

    @Option(name: .shortAndLong, help: "Output folder (must not exist yet).")
    var output: String

    func run() throws {
        do { try WorldModel.writeSkeleton(to: URL(fileURLWithPath: output)) } catch { fail(String(describing: error)) }
        print("wrote \(output)")
    }
}
