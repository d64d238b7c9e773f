import NestEngine
import NestModels

extension NestedAttentionBinding {
    /// Every check a binding needs, before anything is changed. Returns, per
    /// subject, the UNet layers its adapter's `layers.N` projections feed.
    /// Errors are one line and name the adapter by its placeholder token.
    static func validate(_ subjects: [NestedBindingSubject],
                         against crossAttention: [(path: String, layer: Attention)]) throws -> [[Attention]] {
        var claimedBy: [String: Int] = [:]
        for (number, subject) in subjects.enumerated() {
            let config = subject.adapter.config
            let name = config.placeholderToken
            guard config.kind == .nested else {
                throw ModelConfigError("adapter '\(name)': kind '\(config.kind.rawValue)' cannot be bound as nested attention")
            }
            if let other = claimedBy[name] {
                throw ModelConfigError("adapters #\(other + 1) and #\(number + 1) both claim the placeholder token '\(name)'")
            }
            claimedBy[name] = number
            let e = subject.tokens, width = config.resampler.outputDim
            let batch = subject.tokenIndex.count
            guard e.rank == 3, e.shape[2] == width, e.shape[0] == 1 || e.shape[0] == batch else {
                throw ModelConfigError("adapter '\(name)': encoder tokens must be [1 or \(batch), M, \(width)], got \(e.shape)")
            }
            if let index = subject.tokenIndex.compactMap({ $0 }).first(where: { $0 < 0 }) {
                throw ModelConfigError("adapter '\(name)': token index \(index) is negative")
            }
        }
        if let first = subjects.first {
            let batch = first.tokenIndex.count
            if let odd = subjects.first(where: { $0.tokenIndex.count != batch }) {
                throw ModelConfigError("adapter '\(odd.adapter.config.placeholderToken)': \(odd.tokenIndex.count) token indices, but '\(first.adapter.config.placeholderToken)' has \(batch) (one per UNet batch item)")
            }
            for item in 0..<batch {
                var at: [Int: String] = [:]
                for subject in subjects {
                    guard let index = subject.tokenIndex[item] else { continue }
                    let name = subject.adapter.config.placeholderToken
                    if let other = at[index] {
                        throw ModelConfigError("adapters '\(other)' and '\(name)' both claim token \(index) of batch item \(item)")
                    }
                    at[index] = name
                }
            }
        }
        // Adapter files name layers by their attn_processors key; accept the bare module path too.
        let suffix = ".processor"
        let aliases = crossAttention.filter { $0.path.hasSuffix(suffix) }.map { (path: String($0.path.dropLast(suffix.count)), layer: $0.layer) }
        let lookup = crossAttention + aliases
        var resolved: [[Attention]] = []
        for subject in subjects {
            let layers = try subject.adapter.resolveLayers(in: lookup)
            if Set(layers.map(ObjectIdentifier.init)).count != layers.count {
                throw ModelConfigError("adapter '\(subject.adapter.config.placeholderToken)': lists one cross-attention layer twice")
            }
            for layer in layers where !(layer.processor is PlainAttentionProcessor) {
                let path = crossAttention.first { $0.layer === layer }?.path ?? "?"
                throw ModelConfigError("layer '\(path)' already has a \(type(of: layer.processor)) (uninstall the previous binding first)")
            }
            resolved.append(layers)
        }
        return resolved
    }
}
