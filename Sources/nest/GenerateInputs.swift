import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization

/// What `nest generate` reads besides the model — adapter configs, subject photos,
/// IP-Adapter images — read and checked before the model loads, so that bad input
/// fails in one line before any work.
final class GenerateInputs {
    let command: Generate
    let adapterPaths: [String]
    /// Subject tokens in the order first given, and their photos.
    let subjectOrder: [String]
    let subjectImages: [String: [RGBImage]]
    let ipPictures: [RGBImage]
    /// Set by `generator(for:)` when the run has subjects or an IP-Adapter.
    private(set) var personalized: PersonalizedRun?

    init(command: Generate, model: String) {
        self.command = command
        var order: [String] = [], images: [String: [RGBImage]] = [:]
        for spec in command.subjects {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                fail("--subject must look like TOKEN=IMAGE, got \"\(Escaped.text(spec))\"")
            }
            let token = String(spec[..<eq]), path = String(spec[spec.index(after: eq)...])
            guard !path.isEmpty else { fail("--subject \(Escaped.text(token))=: no image path after \"=\"") }
            if images[token] == nil { order.append(token) }
            images[token, default: []].append(Self.readImage(path))
        }
        subjectOrder = order
        subjectImages = images
        let (paths, known) = Self.adapterPaths(command: command, model: model, subjectTokens: order)
        adapterPaths = paths
        do {
            try PersonalizedPipeline.checkPlaceholders(prompt: command.prompt, negativePrompt: command.negativePrompt,
                                                       known: known, subjects: Set(order))
        } catch { fail(cliMessage(error) + "; pass --subject TOKEN=IMAGE, or write the class word for the base model alone") }
        ipPictures = command.ipImages.map(Self.readImage)
        if let ipAdapter = command.ipAdapter {
            do { close(try RegularFile.open(ipAdapter).descriptor) } catch { fail("--ip-adapter \(error)") }
        }
    }

    /// The adapters to load: every --adapter, plus the model folder's own adapter for
    /// each --subject token no --adapter covers; and every placeholder token these or
    /// the folder's adapters know. Fails in one line when a subject's token has no adapter.
    static func adapterPaths(command: Generate, model: String, subjectTokens: [String]) -> (paths: [String], known: Set<String>) {
        var paths = command.adapters
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
        for token in subjectTokens where !covered.contains(token) {
            guard let path = shipped[token] else {
                let offered = shipped.keys.sorted().joined(separator: ", ")
                fail("--subject \(Escaped.text(token)): no adapter for this token; pass --adapter FILE.json"
                     + (offered.isEmpty ? "" : " (the model's own adapters are for \(offered))"))
            }
            paths.append(path)
            covered.insert(token)
        }
        return (paths, covered.union(shipped.keys))
    }

    static func readImage(_ path: String) -> RGBImage {
        do {
            let image = try ImageFile.decode(path: path)
            if min(image.width, image.height) < 64 {
                warn("\(path) is only \(image.width)×\(image.height); subject photos under 64 px carry little identity")
            }
            return image
        } catch { fail(String(describing: error)) }
    }

    /// How one batch is generated: the plain pipeline, or with the subjects bound.
    func generator(for pipeline: StableDiffusionPipeline) throws
        -> (GenerationConfiguration, @escaping (GenerationProgress) -> Bool) throws -> Tensor {
        if adapterPaths.isEmpty && subjectOrder.isEmpty && command.ipAdapter == nil {
            return { config, progress in try pipeline.generate(config, progress: progress) }
        }
        let pipe: PersonalizedPipeline
        do {
            pipe = try PersonalizedPipeline(base: pipeline)
            for path in adapterPaths { try pipe.addAdapter(path: path) }
            if let ipAdapter = command.ipAdapter { pipe.ipAdapter = try IPAdapter.load(path: URL(fileURLWithPath: ipAdapter)) }
        } catch { fail(String(describing: error)) }
        for token in pipe.adapters.keys where subjectImages[token] == nil {
            fail("adapter \(token) is loaded but no --subject \(token)=IMAGE was given")
        }
        var options: [String: NestedAttentionOptions] = [:]
        for (token, adapter) in pipe.adapters {
            var o = NestedAttentionOptions(valueNormalization: adapter.config.defaults.valueNormalization,
                                           tokenWeight: adapter.config.defaults.tokenWeight)
            if let valueNorm = command.valueNorm { o.valueNormalization = valueNorm }
            if let tokenWeight = command.tokenWeight { o.tokenWeight = tokenWeight }
            options[token] = o
        }
        let run = PersonalizedRun(pipe: pipe, subjects: subjectOrder.map { Subject(placeholder: $0, images: subjectImages[$0]!) })
        personalized = run
        pipe.recordAttention = command.saveAttention != nil
        let (ipPictures, ipScale) = (self.ipPictures, command.subjectScale)
        return { config, progress in
            try pipe.generate(config, subjects: run.subjects, options: options, ipImages: ipPictures, ipScale: ipScale, progress: progress)
        }
    }
}

/// A personalized run's pipeline and subjects, kept for the attention maps.
final class PersonalizedRun {
    let pipe: PersonalizedPipeline
    let subjects: [Subject]
    init(pipe: PersonalizedPipeline, subjects: [Subject]) { self.pipe = pipe; self.subjects = subjects }

    /// Writes the maps recorded during the first batch, then stops recording.
    func writeAttention(image: RGBImage, to folder: String, overwrite: Bool) throws {
        try writeAttentionMaps(pipe.recorders, image: image, references: pipe.referenceTraces(subjects),
                               to: URL(fileURLWithPath: folder), overwrite: overwrite)
        note("wrote attention maps of \(pipe.recorders.count) layers to \(folder)")
        pipe.recordAttention = false
    }
}
