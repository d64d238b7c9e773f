import Foundation
import NestEngine
import NestIO

/// Why a LoRA or embedding file cannot be used; one line naming the file and what is wrong.
public struct LoRAError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// One low-rank pair of a LoRA file, with the names it came under.
struct LoRAPair {
    let component: LoRAComponent
    let naming: LoRANaming
    let module: String
    let down: String
    let up: String
    /// The file's alpha for this pair; nil means alpha = rank (a scale of 1).
    var alpha: Float?
}

/// A LoRA safetensors file taken apart into pairs, in any layout `LoRAKeyTable` reads.
struct LoRAFile {
    let path: String
    let file: SafeTensorsFile
    let pairs: [LoRAPair]

    init(path: String) throws {
        self.path = path
        do { file = try SafeTensorsFile(path: path) } catch { throw LoRAError("\(path): \(error)") }
        var downs: [String: (LoRAKey, String)] = [:], ups: [String: String] = [:], alphas: [String: String] = [:]
        var unknown: [String] = []
        func id(_ k: LoRAKey) -> String { "\(k.component.rawValue)|\(k.naming == .kohya ? "k" : "d")|\(k.module)" }
        for name in file.names {
            guard let key = LoRAKeyTable.parse(name) else { unknown.append(name); continue }
            switch key.role {
            case .down: downs[id(key)] = (key, name)
            case .up: ups[id(key)] = name
            case .alpha: alphas[id(key)] = name
            }
        }
        if !unknown.isEmpty {
            throw LoRAError("\(path): \(unknown.count) tensor(s) are not LoRA weights in a known layout: "
                            + unknown.prefix(5).joined(separator: ", ") + (unknown.count > 5 ? ", …" : ""))
        }
        if let lone = ups.keys.sorted().first(where: { downs[$0] == nil }) {
            throw LoRAError("\(path): \(ups[lone]!) has no matching down (lora_A/lora_down) tensor")
        }
        if let lone = alphas.keys.sorted().first(where: { downs[$0] == nil }) {
            throw LoRAError("\(path): \(alphas[lone]!) belongs to no LoRA pair")
        }
        let metadata = LoRAAlphaMetadata(file.metadata)
        var pairs: [LoRAPair] = []
        for (id, (key, down)) in downs.sorted(by: { $0.key < $1.key }) {
            guard let up = ups[id] else { throw LoRAError("\(path): \(down) has no matching up (lora_B/lora_up) tensor") }
            var alpha = metadata.alpha(component: key.component, module: key.module)
            if let name = alphas[id] {
                let values = try file.floats(name)
                guard values.count == 1, values[0].isFinite else { throw LoRAError("\(path): \(name) is not one finite number") }
                alpha = values[0]
            }
            pairs.append(LoRAPair(component: key.component, naming: key.naming, module: key.module, down: down, up: up, alpha: alpha))
        }
        if pairs.isEmpty { throw LoRAError("\(path): holds no LoRA weights") }
        self.pairs = pairs
    }
}

/// The alphas diffusers writes into a file's metadata (`lora_adapter_metadata`: per
/// component, PEFT's `lora_alpha` and `alpha_pattern`) for files without `.alpha` tensors.
struct LoRAAlphaMetadata {
    private var config: [String: Any] = [:]

    init(_ metadata: [String: String]) {
        guard let text = metadata["lora_adapter_metadata"], let data = text.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        config = object
    }

    func alpha(component: LoRAComponent, module: String) -> Float? {
        let prefix = component.rawValue + "."
        if let patterns = config[prefix + "alpha_pattern"] as? [String: Any] {
            // PEFT matches a pattern against the end of the module path, on a dot boundary.
            for (pattern, value) in patterns where module == pattern || module.hasSuffix("." + pattern) {
                if let number = value as? NSNumber { return number.floatValue }
            }
        }
        return (config[prefix + "lora_alpha"] as? NSNumber)?.floatValue
    }
}
