import Foundation
import NestEngine
import NestIO

/// A textual-inversion embedding file: learned vectors for one new prompt token, per
/// text encoder. Layouts (safetensors):
///   * diffusers' `learned_embeds.safetensors`: one tensor named by its token, [n, dim] or [dim];
///   * the web UI's: `emb_params` [n, dim]; for SDXL `clip_l` (first encoder) and `clip_g` (second).
/// A token with n vectors becomes n tokens (token, token_1, …), as diffusers adds them.
public struct TextualInversion {
    public let token: String
    /// Vectors by text-encoder index (0: the first/only encoder, 1: SDXL's second).
    public let vectors: [Int: [[Float]]]

    /// Which tensor names feed which encoder in the web UI's layout.
    static let webUITensors: [(name: String, encoder: Int)] = [("emb_params", 0), ("clip_l", 0), ("clip_g", 1)]

    /// `token` overrides the file's token (diffusers layout) or the file's stem (web-UI layout).
    public init(path: String, token: String? = nil) throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw LoRAError("\(path): \(error)") }
        var vectors: [Int: [[Float]]] = [:]
        let webUI = Self.webUITensors.filter { file.tensors[$0.name] != nil }
        let name: String
        if !webUI.isEmpty {
            let others = file.names.filter { n in !Self.webUITensors.contains { $0.name == n } }
            if let other = others.first { throw LoRAError("\(path): tensor \(other) is not part of a web-UI embedding (emb_params, clip_l, clip_g)") }
            for entry in webUI { vectors[entry.encoder] = try Self.rows(file, entry.name, path: path) }
            name = token ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        } else if file.names.count == 1 {
            vectors[0] = try Self.rows(file, file.names[0], path: path)
            name = token ?? file.names[0]
        } else {
            throw LoRAError("\(path): not a textual-inversion embedding (expected one tensor named by its token, or emb_params / clip_l / clip_g); holds "
                            + file.names.prefix(4).joined(separator: ", ") + (file.names.count > 4 ? ", …" : ""))
        }
        guard !name.isEmpty, !name.contains(where: \.isWhitespace) else { throw LoRAError("\(path): embedding token '\(name)' must be one word") }
        self.token = name
        self.vectors = vectors
    }

    private static func rows(_ file: SafeTensorsFile, _ name: String, path: String) throws -> [[Float]] {
        let shape = file.tensors[name]!.shape
        guard (shape.count == 1 || shape.count == 2), let dim = shape.last, dim > 0, shape.first! > 0 else {
            throw LoRAError("\(path): \(name) is \(shape), not [vectors, width]")
        }
        let values = try file.floats(name)
        guard values.allSatisfy(\.isFinite) else { throw LoRAError("\(path): \(name) holds non-finite values") }
        return stride(from: 0, to: values.count, by: dim).map { Array(values[$0..<$0 + dim]) }
    }

    /// Adds the token to the prompt encoder; widths are checked against each text encoder.
    public func add(to prompts: PromptEncoder, path: String) throws {
        if vectors.keys.contains(where: { $0 >= prompts.encoders.count }) {
            throw LoRAError("\(path): has vectors for a second text encoder (clip_g), which this model does not have")
        }
        for (index, rows) in vectors.sorted(by: { $0.key < $1.key }) {
            let width = prompts.encoders[index].config.encoder.hiddenSize
            guard rows[0].count == width else {
                throw LoRAError("\(path): vectors are \(rows[0].count) wide but text encoder \(index + 1) is \(width) wide (an embedding for another model?)")
            }
        }
        do {
            for (index, rows) in vectors.sorted(by: { $0.key < $1.key }) { try prompts.addEmbedding(token: token, vectors: rows, encoder: index) }
        } catch {
            throw LoRAError("\(path): \(error)")
        }
    }
}
