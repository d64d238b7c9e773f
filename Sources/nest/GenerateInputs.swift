import Foundation
import NestDiffusion
import NestIO
import NestPersonalization

/// What `nest generate` reads besides the model — subject photos, adapter configs,
/// IP-Adapter images — read and checked before the model loads, so that bad input
/// fails in one line before any work. The checks themselves are the library's.
struct GenerateInputs {
    private(set) var request: GenerationRequest
    let catalog: AdapterCatalog

    init(command: Generate, model: String, seed: UInt64) {
        var order: [String] = [], photos: [String: [RGBImage]] = [:]
        for spec in command.subjects {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                fail("--subject must look like TOKEN=IMAGE, got \"\(Escaped.text(spec))\"")
            }
            let token = String(spec[..<eq]), path = String(spec[spec.index(after: eq)...])
            guard !path.isEmpty else { fail("--subject \(Escaped.text(token))=: no image path after \"=\"") }
            if photos[token] == nil { order.append(token) }
            photos[token, default: []].append(Self.readImage(path))
        }
        let initImage = command.initImage.map { path -> RGBImage in
            do { return try ImageFile.decode(path: path) } catch { fail("--init-image \(error)") }
        }
        request = GenerationRequest(generation: command.request(seed: seed, initImage: initImage),
                                    subjects: order.map { Subject(placeholder: $0, images: photos[$0]!) },
                                    valueNormalization: command.valueNorm, tokenWeight: command.tokenWeight,
                                    ipImages: command.ipImages.map(Self.readImage), ipScale: command.subjectScale,
                                    recordAttention: command.saveAttention != nil)
        do {
            request.loras = try command.loras.map(LoRAChoice.init(argument:))
        } catch { fail(cliMessage(error)) }
        request.embeddings = command.embeddings.map(EmbeddingChoice.init(argument:))
        if !request.loras.isEmpty || !request.embeddings.isEmpty {
            do { try request.validate() } catch { fail(cliMessage(error)) }  // their scales, before reading the files
        }
        for (option, path) in request.loras.map({ ("--lora", $0.path) }) + request.embeddings.map({ ("--embedding", $0.path) }) {
            do { close(try RegularFile.open(path).descriptor) } catch { fail("\(option) \(error)") }
        }
        do {
            catalog = try AdapterCatalog(model: URL(fileURLWithPath: model), named: command.adapters)
            _ = try catalog.tokens(for: request.subjects)
            try catalog.checkPlaceholders(request)
        } catch let error as GenerationRequestError where error.field == "prompt" || error.field == "negative_prompt" {
            fail(cliMessage(error) + "; pass --subject TOKEN=IMAGE, or write the class word for the base model alone")
        } catch { fail(cliMessage(error)) }
        if let ipAdapter = command.ipAdapter {
            do { close(try RegularFile.open(ipAdapter).descriptor) } catch { fail("--ip-adapter \(error)") }
        }
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
}
