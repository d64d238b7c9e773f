import Foundation

/// A diffusers pipeline folder: `model_index.json` names the components
/// (`unet`, `vae`, `text_encoder`, …), each stored in a subfolder with its
/// own `config.json` and weights.
public struct ModelFolder: Sendable {
    public let url: URL
    /// Component name → (library, class name), as model_index.json lists them.
    public let components: [String: (library: String, className: String)]
    /// The pipeline class (`StableDiffusionPipeline`, `StableDiffusionXLPipeline`, …).
    public let pipelineClass: String

    public init(url: URL) throws {
        self.url = url
        let indexURL = url.appendingPathComponent("model_index.json")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelConfigError("\(url.path): not a folder")
        }
        guard FileManager.default.fileExists(atPath: indexURL.path) else {
            throw ModelConfigError("\(url.path): no model_index.json (not a diffusers model folder)")
        }
        let data = try readConfigFile(indexURL)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelConfigError("\(indexURL.path): not a JSON object")
        }
        pipelineClass = object["_class_name"] as? String ?? "unknown"
        var found: [String: (String, String)] = [:]
        for (key, value) in object where !key.hasPrefix("_") {
            // Entries are [library, class]; [null, null] marks an absent optional component.
            guard let pair = value as? [Any], pair.count == 2,
                  let library = pair[0] as? String, let className = pair[1] as? String else { continue }
            found[key] = (library, className)
        }
        components = found
    }

    /// The folder of a component the pipeline needs, or an error saying it is missing.
    public func component(_ name: String) throws -> URL {
        guard components[name] != nil else {
            throw ModelConfigError("\(url.path): model_index.json lists no '\(name)' component")
        }
        let folder = url.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: folder.path) else {
            throw ModelConfigError("\(url.path): component folder '\(name)/' is missing")
        }
        return folder
    }

    public func has(_ name: String) -> Bool { components[name] != nil }
}
