import ArgumentParser
import Foundation
import NestIO
import NestWorld

/// The miniature world: datasets for training and contact sheets for looking.
struct World: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render the procedural miniature world (critters and bots) as training data.",
        subcommands: [WorldDatasetCommand.self, WorldModelCommand.self, WorldPackCommand.self, WorldSubjectCommand.self])
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

    @Option(help: "Portrait renders per identity (centre, large, flat, no accessory) to use as the references instead of the other scenes; 0: none.")
    var portraits: Int = 0

    @Option(help: "How the --portraits references are framed: scene (the wide shot's large subject) or a near framing (close-up shows the whole subject).")
    var referenceFraming: String = "scene"

    @Flag(help: "Leave out the held-out background × style pairs (beach+sketch, snow+night, city+flat), which `nest eval` prompts with.")
    var holdOut = false

    @Option(help: "Only scenes whose context has these values, as aspect=value pairs (aspects: background, position, size, style, accessory, companion; an aspect named twice allows both), e.g. background=forest,style=flat,companion=no.")
    var only: String?

    @Flag(help: "Also write each scene's subject mask (white where the named subject is drawn) as NN-mask.png, named by the records' \"mask\" key (for subject_loss_weight).")
    var masks = false

    @Option(help: "Fraction of captions (0...1) that name the subject's visible traits before its noun (\"a small dark golden spotted critter\"); ignored with --placeholder.")
    var describe: Float = 0

    @Option(help: "Which trait words --describe names: glance (lightness, hue, markings) or full (every trait the renderer draws: colours, proportions, eyes, ears or antennae, tail or limbs, marking colour).")
    var traitWords: TraitDetail = .glance

    @Option(help: "Framings drawn per scene, comma-separated: scene (the wide shot), portrait, half-body, close-up.")
    var framings: String = "scene"

    @Option(help: "Image side in pixels (64, 96, 128: the same scenes drawn finer).")
    var size: Int = 64

    @Flag(help: "Also write preview.png, a contact sheet of the first images.")
    var preview = false

    func validate() throws {
        do { _ = try Framing.list(framings) } catch { throw ValidationError("--framings: \(error)") }
        guard Framing(rawValue: referenceFraming) != nil else {
            throw ValidationError("--reference-framing: unknown framing '\(referenceFraming)' (\(Framing.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        do { try WorldRenderer.checkSide(size) } catch { throw ValidationError("--size: \(error)") }
        guard (0...1).contains(describe) else { throw ValidationError("--describe must be between 0 and 1, got \(describe)") }
        guard identities > 0 else { throw ValidationError("--identities must be positive, got \(identities)") }
        guard contexts >= 2 else { throw ValidationError("--contexts must be at least 2, got \(contexts)") }
        guard portraits >= 0 else { throw ValidationError("--portraits must not be negative, got \(portraits)") }
        if let only { do { _ = try ContextFilter(parsing: only) } catch { throw ValidationError("--only: \(error)") } }
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
                                             seed: seed, placeholder: placeholder, domains: domains,
                                             portraits: portraits, holdOut: holdOut, masks: masks,
                                             describe: describe, traitDetail: traitWords, framings: Framing.list(framings),
                                             referenceFraming: Framing(rawValue: referenceFraming)!,
                                             only: try only.map(ContextFilter.init(parsing:)) ?? .any, side: size)
        } catch { fail(String(describing: error)) }
        if preview {
            let images = try records.prefix(48).map { try ImageFile.decode(path: folder.appendingPathComponent($0.image).path) }
            try ImageFile.writePNG(ContactSheet.make(images, columns: 8), to: folder.appendingPathComponent("preview.png").path)
        }
        print("wrote \(records.count) images and manifest.jsonl to \(output)")
    }
}

extension TraitDetail: ExpressibleByArgument {}

struct WorldModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Write the world's untrained model folder (diffusers layout: configs and tokenizer, no weights).")

    @Option(name: .shortAndLong, help: "Output folder (must not exist yet).")
    var output: String

    @Option(help: "The framings the world will be trained on, comma-separated (recorded in world.json for nest eval; default: scene, the first edition's wide shot).")
    var framings: String = "scene"

    @Option(help: "How its subjects are shown to adapters (default: scene for the wide shot, close-up otherwise).")
    var referenceFraming: String?

    @Option(help: "Noise schedule and objective: zero-snr (v-prediction, zero terminal SNR, trailing timesteps) or sd (Stable Diffusion 1.x's ε-prediction, the first and second editions').")
    var noiseSchedule: String = WorldNoiseSchedule.zeroTerminalSNR.rawValue

    @Option(help: "The UNet's channels per level, three widths (multiples of 32); larger than the default is for an accelerator (the PyTorch recipe's UNet stage).")
    var unetChannels: String = WorldUNetShape.standard.channels.map(String.init).joined(separator: ",")

    @Option(help: "ResNet layers per UNet block.")
    var unetLayers: Int = WorldUNetShape.standard.layersPerBlock

    @Option(help: "The trait words its captions will name subjects with (recorded in world.json for nest eval's trait-words and lookalike rows): glance or full.")
    var traitWords: TraitDetail = .glance

    func validate() throws {
        do { _ = try Framing.list(framings) } catch { throw ValidationError("--framings: \(error)") }
        do { _ = try WorldUNetShape(channels: unetChannels, layersPerBlock: unetLayers) } catch { throw ValidationError("\(error)") }
        if let referenceFraming, Framing(rawValue: referenceFraming) == nil {
            throw ValidationError("--reference-framing: unknown framing '\(referenceFraming)' (\(Framing.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if WorldNoiseSchedule(rawValue: noiseSchedule) == nil {
            throw ValidationError("--noise-schedule: unknown schedule '\(noiseSchedule)' (\(WorldNoiseSchedule.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    func run() throws {
        let list = try Framing.list(framings)
        let reference = referenceFraming.flatMap(Framing.init(rawValue:)) ?? (list == [.scene] ? .scene : .closeUp)
        let settings = WorldSettings(framings: list, referenceFraming: reference, traitWords: traitWords)
        let schedule = WorldNoiseSchedule(rawValue: noiseSchedule)!
        let unet = try! WorldUNetShape(channels: unetChannels, layersPerBlock: unetLayers)  // checked in validate()
        do { try WorldModel.writeSkeleton(to: URL(fileURLWithPath: output), settings: settings, schedule: schedule, unet: unet) } catch { fail(String(describing: error)) }
        print("wrote \(output)")
    }
}

struct WorldPackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Copy a model folder with every safetensors file stored as float16 (half the size; the loader widens to float32).")

    @Option(help: "The trained model folder.")
    var model: String

    @Option(name: .shortAndLong, help: "Output folder (must not exist yet).")
    var output: String

    func run() throws {
        let bytes: Int
        do { bytes = try WorldModel.pack(URL(fileURLWithPath: model), to: URL(fileURLWithPath: output)) } catch {
            fail(String(describing: error))
        }
        print(String(format: "wrote %@ (%.1f MB)", output, Double(bytes) / 1e6))
    }
}

struct WorldSubjectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subject",
        abstract: "Render one individual as a subject photo (centre, large, flat style, no accessory; wide shot unless --framing), e.g. for --subject.")

    @Option(help: "critter or bot.")
    var domain: String

    @Option(help: "Which individual (any number; the datasets draw theirs from other seeds).")
    var seed: UInt64

    @Option(help: "Background of the photo.")
    var background: String = "beach"

    @Option(help: "Framing: scene (the wide shot), portrait, half-body or close-up.")
    var framing: String = "scene"

    @Option(help: "Image side in pixels (64, 96, 128).")
    var size: Int = 64

    @Option(name: .shortAndLong, help: "Output PNG (must not exist yet).")
    var output: String

    func run() throws {
        guard let d = Domain(rawValue: domain) else { fail("--domain: unknown domain '\(domain)' (critter or bot)") }
        guard let b = Background(rawValue: background) else {
            fail("--background: unknown background '\(background)' (\(Background.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let f = Framing(rawValue: framing) else {
            fail("--framing: unknown framing '\(framing)' (\(Framing.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        do { try WorldRenderer.checkSide(size) } catch { fail("--size: \(error)") }
        // As the other world commands: an existing output is never replaced.
        let exists = "\(output) already exists; choose another name (nothing was overwritten)"
        if FileManager.default.fileExists(atPath: output) { fail(exists) }
        let identity = Identity.random(domain: d, seed: seed)
        let image = WorldRenderer.render(identity: identity, context: Context(background: b, framing: f), seed: seed, side: size)
        do { try ImageFile.writePNG(image, to: output) } catch let error as ImageError where error.kind == .alreadyExists {
            fail(exists)  // it appeared while rendering
        } catch { fail(String(describing: error)) }
        print("wrote \(output)")
    }
}
