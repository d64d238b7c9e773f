import NestEngine
import NestModels

/// What one kind of subject adapter does to a UNet step, the same in generation and in
/// training: the attention processors it sets and the prompt context it rewrites. Each
/// call gets all of a step's subjects of its kind (`NestedBindingSubject`: adapter, encoder
/// tokens, the placeholder's position per batch item, settings).
public protocol SubjectMethod {
    /// The processors for `subjects`, composed over the UNet's `current` ones (empty: none).
    func processors(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject],
                    over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor]
    /// The conditional prompts' context [B, T, D] with `subjects` written in (unchanged: nothing to write).
    func context(_ context: Tensor, subjects: [NestedBindingSubject]) -> Tensor
    /// The subject as a generation binds it: `tokens` [1, M, D] of the photos, the placeholder
    /// at `position` in each of the `count` prompts, under classifier-free guidance or not.
    /// `options` and `scale`: the request's, already merged with the adapter's defaults where asked.
    func generationSubject(adapter: PersonalizationAdapter, tokens: Tensor, position: Int, count: Int, guided: Bool,
                           featureCount: Int, options: NestedAttentionOptions?, scale: Float?) -> NestedBindingSubject
}

/// A request's settings for one subject; nil keeps the adapter's default.
public struct SubjectSettings: Sendable, Equatable {
    public var valueNormalization: Float?
    public var tokenWeight: Float?
    public var scale: Float?
    public init(valueNormalization: Float? = nil, tokenWeight: Float? = nil, scale: Float? = nil) {
        self.valueNormalization = valueNormalization; self.tokenWeight = tokenWeight; self.scale = scale
    }
}

extension AdapterConfig.Defaults {
    /// λ and w in force: the ones asked for, else these defaults (the one place the two meet).
    public func nestedOptions(_ settings: SubjectSettings = .init()) -> NestedAttentionOptions {
        NestedAttentionOptions(valueNormalization: settings.valueNormalization ?? valueNormalization,
                               tokenWeight: settings.tokenWeight ?? tokenWeight)
    }

    /// The decoupled baseline's scale in force.
    public func scale(_ settings: SubjectSettings) -> Float { settings.scale ?? scale }
}

extension AdapterConfig.Kind {
    /// The method behind adapters of this kind.
    public var method: SubjectMethod {
        switch self {
        case .nested: NestedAttentionMethod()
        case .ipAdapter: DecoupledAttentionBaseline()
        case .singleToken: SingleTokenBaseline()
        }
    }

    /// The order in which a step composes the methods: the decoupled baseline wraps the UNet's
    /// processors, Nested Attention then takes its layers; the single-token baseline sets none.
    public static let compositionOrder: [AdapterConfig.Kind] = [.ipAdapter, .nested, .singleToken]
}

/// Nested Attention: each bound layer's subject token gets a per-query value.
public struct NestedAttentionMethod: SubjectMethod {
    public init() {}

    public func processors(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject],
                           over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor] {
        subjects.isEmpty ? [:] : try NestedAttentionBinding.make(on: unet, subjects: subjects).processors
    }

    public func context(_ context: Tensor, subjects: [NestedBindingSubject]) -> Tensor { context }

    /// The unconditional half of a guided batch has no subject token.
    public func generationSubject(adapter: PersonalizationAdapter, tokens: Tensor, position: Int, count: Int, guided: Bool,
                                  featureCount: Int, options: NestedAttentionOptions?, scale: Float?) -> NestedBindingSubject {
        let cond = Array(repeating: Optional(position), count: count)
        return NestedBindingSubject(adapter: adapter, tokens: tokens, tokenIndex: guided ? Array(repeating: nil, count: count) + cond : cond,
                                    options: options)
    }
}

/// The project's decoupled-attention baseline (IP-Adapter's idea on this project's encoder,
/// not the IP-Adapter file format): a second attention over the subject's encoder tokens.
public struct DecoupledAttentionBaseline: SubjectMethod {
    public init() {}

    public func processors(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject],
                           over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor] {
        var composed = current, out: [String: AttentionProcessor] = [:]
        for subject in subjects {
            let scale = subject.adapter.config.defaults.scale(SubjectSettings(scale: subject.scale))
            let added = try DecoupledAttentionBinding.processors(on: unet, adapter: subject.adapter, tokens: subject.tokens,
                                                                 scale: scale, over: composed)
            composed.merge(added) { $1 }
            out.merge(added) { $1 }
        }
        return out
    }

    public func context(_ context: Tensor, subjects: [NestedBindingSubject]) -> Tensor { context }

    /// The unconditional half sees "no image" (zero features), as IP-Adapter's negative.
    public func generationSubject(adapter: PersonalizationAdapter, tokens: Tensor, position: Int, count: Int, guided: Bool,
                                  featureCount: Int, options: NestedAttentionOptions?, scale: Float?) -> NestedBindingSubject {
        let empty = Autograd.noGrad { adapter.emptyTokens(featureCount: featureCount) }
        let batch = F.concat((guided ? Array(repeating: empty, count: count) : []) + Array(repeating: tokens, count: count), axis: 0)
        return NestedBindingSubject(adapter: adapter, tokens: batch, tokenIndex: Array(repeating: Optional(position), count: count),
                                    scale: scale)
    }
}

/// The single-token baseline: the subject is one vector written over the placeholder's context row.
public struct SingleTokenBaseline: SubjectMethod {
    public init() {}

    public func processors(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject],
                           over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor] { [:] }

    public func context(_ context: Tensor, subjects: [NestedBindingSubject]) -> Tensor {
        subjects.reduce(context) { context, subject in
            replacingToken(in: context, positions: subject.tokenIndex, with: subject.adapter.subjectVector(subject.tokens))
        }
    }

    /// Only the conditional prompts carry the subject.
    public func generationSubject(adapter: PersonalizationAdapter, tokens: Tensor, position: Int, count: Int, guided: Bool,
                                  featureCount: Int, options: NestedAttentionOptions?, scale: Float?) -> NestedBindingSubject {
        NestedBindingSubject(adapter: adapter, tokens: tokens, tokenIndex: Array(repeating: Optional(position), count: count))
    }
}
