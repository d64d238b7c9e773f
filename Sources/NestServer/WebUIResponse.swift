import Foundation
import NestDiffusion
import NestIO
import NestPersonalization

/// A finished txt2img job in the web UI's response shape: `images` (base64 PNGs, each
/// with its `parameters` text chunk), `parameters` (the request as understood) and
/// `info` (a JSON string with the seeds and the per-image parameter texts).
struct WebUIResponse {
    let asked: WebUIRequest
    let outcome: JobOutcome
    /// The model folder's name, and the sampler that runs when none is asked for.
    let modelName: String
    let defaultSampler: SchedulerKind

    var samplerName: String {
        WebUISamplers.name(kind: asked.request.generation.scheduler ?? defaultSampler)
    }

    var scheduleLabel: String {
        switch asked.request.generation.karras { case true?: "Karras"; case false?: "Uniform"; case nil: "Automatic" }
    }

    /// The infotext of one image, in the web UI's layout: prompt, negative prompt line,
    /// then `Key: value` pairs.
    func parameters(_ image: GeneratedImage) -> String {
        let g = asked.request.generation
        var text = g.prompt
        if let negative = g.negativePrompt { text += "\nNegative prompt: \(negative)" }
        var pairs: [(String, String)] = [
            ("Steps", "\(g.steps)"), ("Sampler", samplerName), ("Schedule type", scheduleLabel),
            ("CFG scale", "\(g.guidanceScale)"), ("Seed", "\(image.seed)"),
            ("Size", "\(image.image.width)x\(image.image.height)"), ("Model", modelName),
        ]
        if g.initImage != nil { pairs.append(("Denoising strength", "\(g.effectiveStrength)")) }
        if g.batchSize > 1 { pairs += [("Batch size", "\(image.batchSize)"), ("Batch pos", "\(image.positionInBatch)")] }
        let subjects = asked.request.subjects.map(\.placeholder)
        if !subjects.isEmpty {
            pairs.append(("Nested attention", subjects.joined(separator: " ")))
            if let lambda = asked.request.valueNormalization { pairs.append(("Value normalization", "\(lambda)")) }
            if let w = asked.request.tokenWeight { pairs.append(("Token weight", "\(w)")) }
        }
        pairs.append(("Version", "nest"))
        return text + "\n" + pairs.map { "\($0.0): \(quoted($0.1))" }.joined(separator: ", ")
    }

    /// Values with a comma or colon are quoted, as the web UI writes them.
    private func quoted(_ value: String) -> String {
        guard value.contains(",") || value.contains(":") || value.contains("\n") else { return value }
        return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    func pngs() throws -> [Data] {
        try outcome.images.map { try ImageFile.encodePNG($0.image, text: [("parameters", parameters($0))]) }
    }

    /// The `info` object (serialized to a string in the response, as the web UI does).
    func info(timestamp: Date) -> [String: Any] {
        let g = asked.request.generation
        let seeds = outcome.images.map { Int($0.seed) }
        let first = outcome.images.first
        var info: [String: Any] = [
            "prompt": g.prompt, "negative_prompt": g.negativePrompt ?? "",
            "all_prompts": Array(repeating: g.prompt, count: outcome.images.count),
            "all_negative_prompts": Array(repeating: g.negativePrompt ?? "", count: outcome.images.count),
            "seed": Int(first?.seed ?? g.seed), "all_seeds": seeds, "subseed": -1, "all_subseeds": seeds.map { _ in -1 },
            "subseed_strength": 0, "width": first?.image.width ?? g.width ?? 0, "height": first?.image.height ?? g.height ?? 0,
            "sampler_name": samplerName, "scheduler": scheduleLabel, "cfg_scale": g.guidanceScale, "steps": g.steps,
            "batch_size": asked.batchSize, "restore_faces": false, "sd_model_name": modelName,
            "index_of_first_image": 0, "infotexts": outcome.images.map(parameters), "styles": [String](),
            "job_timestamp": Self.timestampFormat(timestamp), "clip_skip": 1, "version": "nest",
            "interrupted": outcome.interrupted,
        ]
        if g.initImage != nil { info["denoising_strength"] = g.effectiveStrength }
        var extra: [String: Any] = [:]
        if !asked.request.subjects.isEmpty {
            extra["Nested attention"] = asked.request.subjects.map(\.placeholder).joined(separator: " ")
        }
        info["extra_generation_params"] = extra
        return info
    }

    /// `yyyyMMddHHmmss` in UTC, the web UI's job timestamp.
    static func timestampFormat(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMddHHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.locale = Locale(identifier: "en_US_POSIX")
        return formatter.string(from: date)
    }

    /// The whole response body; `parameters` echoes the request fields as understood.
    func body(pngs: [Data], timestamp: Date) throws -> Data {
        let g = asked.request.generation
        var parameters: [String: Any] = [
            "prompt": g.prompt, "negative_prompt": g.negativePrompt ?? "", "steps": g.steps, "cfg_scale": g.guidanceScale,
            "seed": Int(g.seed), "batch_size": asked.batchSize, "n_iter": asked.iterations, "sampler_name": samplerName,
            "scheduler": scheduleLabel,
        ]
        parameters["width"] = outcome.images.first?.image.width ?? g.width
        parameters["height"] = outcome.images.first?.image.height ?? g.height
        let infoText = String(decoding: try JSONSerialization.data(withJSONObject: info(timestamp: timestamp), options: [.sortedKeys]),
                              as: UTF8.self)
        let object: [String: Any] = ["images": pngs.map { $0.base64EncodedString() }, "parameters": parameters, "info": infoText]
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
}
