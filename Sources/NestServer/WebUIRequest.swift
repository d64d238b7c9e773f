import Foundation
import NestDiffusion
import NestIO
import NestPersonalization

/// The body of `POST /sdapi/v1/txt2img` in the web UI's field names, turned into the
/// library's `GenerationRequest`. Every field maps here and only here, so a new request
/// field is one line in `decode` and one in `apiField`. Fields the web UI's clients send
/// by default but that change nothing here (styles, restore_faces off, …) are ignored;
/// a feature asked for that this server does not have (hires fix, a script) is a 422.
public struct WebUIRequest {
    public var request: GenerationRequest
    /// The web UI's sampler name as asked for (nil: the model folder's).
    public var samplerName: String?
    /// True when the seed was -1 and one was drawn.
    public var randomSeed: Bool
    public var batchSize: Int
    public var iterations: Int

    /// The field names of the library's request errors, as a web-UI client knows them.
    public static func apiField(_ library: String) -> String {
        switch library {
        case "guidance": "cfg_scale"
        case "init_image": "init_images"
        case "strength": "denoising_strength"
        case "count": "n_iter"
        case "subject": NestedAttentionScript.settings + ".subjects"
        case "value_norm": NestedAttentionScript.settings + ".value_normalization"
        case "token_weight": NestedAttentionScript.settings + ".token_weight"
        case "save_attention": NestedAttentionScript.settings + ".attention_maps"
        default: library
        }
    }

    /// Parses a JSON body; errors name the field (`RequestFieldError`). `imageToImage`:
    /// the body of `/sdapi/v1/img2img`, which must carry `init_images`.
    public static func decode(json: Data, limits: ServerLimits, imageToImage: Bool = false) throws -> WebUIRequest {
        let body = try JSONBody(json)
        for flag in ["enable_hr", "restore_faces", "tiling"] where try body.bool(flag) == true {
            throw RequestFieldError(flag, "is not supported by this server")
        }
        if let script = try body.string("script_name"), !script.isEmpty {
            throw RequestFieldError("script_name", "\"\(script)\": this server runs no scripts; personalization goes in alwayson_scripts")
        }
        if !imageToImage && body.raw("init_images") != nil {
            throw RequestFieldError("init_images", "belongs to /sdapi/v1/img2img")
        }
        if imageToImage, let mask = body.raw("mask"), (mask as? String)?.isEmpty != true {
            throw RequestFieldError("mask", "inpainting is not supported by this server")
        }
        let sampler = try body.string("sampler_name") ?? body.string("sampler_index")
        let kind = try sampler.flatMap { name in try WebUISamplers.kind(named: name, field: "sampler_name") }
        let karras = try WebUISamplers.karras(sampler: sampler, schedule: body.string("scheduler"))
        let seed = try body.int("seed") ?? -1
        guard seed >= -1 && seed < (1 << 53) else { throw RequestFieldError("seed", "must be -1 (random) or between 0 and 2^53, got \(seed)") }
        let batchSize = try body.int("batch_size") ?? 1
        let iterations = try body.int("n_iter") ?? 1
        try checkField { try checkRange(batchSize, 1...limits.generation.maxBatchSize, field: "batch_size") }
        try checkField { try checkRange(iterations, 1...max(1, limits.generation.maxCount / batchSize), field: "n_iter") }
        let negative = try body.string("negative_prompt")
        let generation = GenerationConfiguration(
            prompt: try body.string("prompt") ?? "", negativePrompt: negative?.isEmpty == false ? negative : nil,
            steps: try body.int("steps") ?? 20, guidanceScale: try body.float("cfg_scale") ?? 7,
            guidanceRescale: try body.float("guidance_rescale") ?? 0,
            seed: seed == -1 ? UInt64.random(in: 0..<(1 << 32)) : UInt64(seed),
            width: try body.int("width"), height: try body.int("height"), scheduler: kind, karras: karras,
            count: batchSize * iterations, batchSize: batchSize)
        var request = GenerationRequest(generation: generation)
        if imageToImage {
            request.generation.initImage = try initImage(body, limits: limits)
            request.generation.strength = try body.double("denoising_strength") ?? 0.75
        }
        if let script = try NestedAttentionScript(body: body, limits: limits) {
            request.subjects = script.subjects
            request.valueNormalization = script.valueNormalization
            request.tokenWeight = script.tokenWeight
            request.recordAttention = script.attentionMaps
        }
        try checkField { try request.validate(limits: limits.generation) }
        return WebUIRequest(request: request, samplerName: sampler, randomSeed: seed == -1,
                            batchSize: batchSize, iterations: iterations)
    }
}

/// The one start image of an image-to-image request (the web UI takes a list).
private func initImage(_ body: JSONBody, limits: ServerLimits) throws -> RGBImage {
    guard let list = body.raw("init_images") as? [Any], list.count == 1 else {
        throw RequestFieldError("init_images", "must be a list of one base64 PNG or JPEG")
    }
    return try Base64Image.decode(list[0], field: "init_images[0]", maxPixels: limits.maxPhotoPixels)
}

/// Runs a library check and renames the field of its error for the web-UI client.
func checkField(_ body: () throws -> Void) throws {
    do { try body() } catch let error as GenerationRequestError {
        throw RequestFieldError(WebUIRequest.apiField(error.field), error.problem)
    }
}

/// Personalization in the web UI's extension convention:
/// `"alwayson_scripts": {"nested attention": {"args": [{"subjects": [{"token": "<critter>",
/// "images": ["<base64 PNG or JPEG>"]}], "value_normalization": 2, "token_weight": 1,
/// "attention_maps": true}]}}`.
struct NestedAttentionScript {
    static let name = "nested attention"
    static let field = "alwayson_scripts.nested attention"
    /// The one settings object, as error messages name its fields.
    static let settings = field + ".args[0]"
    var subjects: [Subject] = []
    var valueNormalization: Float?
    var tokenWeight: Float?
    var attentionMaps = false

    /// Nil when the request names no such script (other scripts' entries are ignored).
    init?(body: JSONBody, limits: ServerLimits) throws {
        guard let scripts = body.raw("alwayson_scripts"), !(scripts is NSNull) else { return nil }
        guard let table = scripts as? [String: Any] else { throw RequestFieldError("alwayson_scripts", "must be an object of scripts") }
        guard let entry = table.first(where: { $0.key.lowercased() == Self.name })?.value else { return nil }
        guard let args = (entry as? [String: Any])?["args"] as? [Any] else {
            throw RequestFieldError(Self.field, "must be {\"args\": [{…}]}")
        }
        guard args.count == 1, let settings = args[0] as? [String: Any] else {
            throw RequestFieldError(Self.field + ".args", "must hold one object: {\"subjects\": [...], \"value_normalization\": ...}")
        }
        let object = JSONBody(object: settings, path: Self.settings + ".")
        valueNormalization = try object.float("value_normalization")
        tokenWeight = try object.float("token_weight")
        attentionMaps = try object.bool("attention_maps") ?? false
        guard let list = object.raw("subjects") as? [Any], !list.isEmpty else {
            throw RequestFieldError(object.path + "subjects", "must be a non-empty list of {\"token\": ..., \"images\": [...]}")
        }
        guard list.count <= limits.maxSubjects else {
            throw RequestFieldError(object.path + "subjects", "has \(list.count) subjects, more than the \(limits.maxSubjects) allowed")
        }
        for (i, item) in list.enumerated() {
            let path = object.path + "subjects[\(i)]"
            guard let fields = item as? [String: Any] else { throw RequestFieldError(path, "must be an object") }
            let subject = JSONBody(object: fields, path: path + ".")
            guard let token = try subject.string("token"), !token.isEmpty else { throw RequestFieldError(path + ".token", "is missing") }
            guard let images = subject.raw("images") as? [Any], !images.isEmpty, images.count <= limits.maxPhotosPerSubject else {
                throw RequestFieldError(path + ".images", "must be a list of 1 to \(limits.maxPhotosPerSubject) base64 images")
            }
            let photos = try images.enumerated().map { k, value in
                try Base64Image.decode(value, field: path + ".images[\(k)]", maxPixels: limits.maxPhotoPixels)
            }
            subjects.append(Subject(placeholder: token, images: photos))
        }
    }
}

/// A base64 PNG or JPEG, with or without a `data:image/...;base64,` prefix, decoded
/// under the library's image limits and the server's tighter pixel bound, checked from
/// the header before any pixel is decoded.
enum Base64Image {
    static func decode(_ value: Any, field: String, maxPixels: Int) throws -> RGBImage {
        guard var text = value as? String else { throw RequestFieldError(field, "must be a base64 string") }
        if text.hasPrefix("data:"), let comma = text.firstIndex(of: ",") { text = String(text[text.index(after: comma)...]) }
        guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw RequestFieldError(field, "is not valid base64")
        }
        do {
            let info = try ImageFile.info(data: data, name: "photo")
            guard info.width * info.height <= maxPixels else {
                throw RequestFieldError(field, "is \(info.width)x\(info.height) pixels, more than the \(maxPixels) this server accepts")
            }
            return try ImageFile.decode(data: data, name: "photo")
        } catch let error as RequestFieldError {
            throw error
        } catch {
            let reason = String(describing: error)
            throw RequestFieldError(field, "could not be read (" + (reason.hasPrefix("photo: ") ? String(reason.dropFirst(7)) : reason) + ")")
        }
    }
}
