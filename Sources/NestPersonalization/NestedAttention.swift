import Foundation
import NestDiffusion
import NestEngine

/// One subject's nested keys and values for one cross-attention layer.
///
/// `tokenIndex[b]` is the position of the subject's placeholder token in
/// batch item b's prompt, or nil where the prompt has none (the
/// unconditional branch of guidance), which then gets no injection.
public struct NestedSubject {
    public var tokenIndex: [Int?]
    /// K̃ = E·W̃_K: [B or 1, M, H·d]
    public var keys: Tensor
    /// Ṽ = E·W̃_V: [B or 1, M, H·d]
    public var values: Tensor
    /// This subject's own read-out options; nil uses the call's.
    public var options: NestedAttentionOptions?
    /// v* is added to the token's value V_s instead of replacing it (the adapter's `nested_value: add`).
    public var addsValue: Bool

    public init(tokenIndex: [Int?], keys: Tensor, values: Tensor, options: NestedAttentionOptions? = nil,
                addsValue: Bool = false) {
        self.tokenIndex = tokenIndex
        self.keys = keys
        self.values = values
        self.options = options
        self.addsValue = addsValue
    }
}

/// Options of the nested attention read-out.
public struct NestedAttentionOptions: Sendable, Equatable {
    /// λ: rescale each per-query subject value v*ᵢ to λ·‖V_s‖ (per head); nil leaves it unscaled.
    public var valueNormalization: Float?
    /// w: multiplies the attention the subject token receives (log w is added to its logits).
    public var tokenWeight: Float

    public init(valueNormalization: Float? = nil, tokenWeight: Float = 1) {
        self.valueNormalization = valueNormalization
        self.tokenWeight = tokenWeight
    }

    /// λ and w as finite numbers in their ranges: a NaN or infinite one turns every
    /// subject value into NaN, and the image black. w enters as log w, so it must be positive.
    public func validate() throws {
        if let valueNormalization { try checkRange(valueNormalization, 0...100, field: "value_norm") }
        try checkRange(tokenWeight, 0...100, field: "token_weight")
        guard tokenWeight > 0 else { throw GenerationRequestError(field: "token_weight", "must be positive, got \(tokenWeight)") }
    }
}

/// Cross-attention in which each subject token's value is replaced by a
/// per-query value chosen by a nested attention over the subject's encoder
/// tokens (Patashnik et al. 2025):
///
///   aᵢ = softmax(qᵢ·Kᵀ/√d),  v*ᵢ = softmax(qᵢ·K̃ᵀ/√d)·Ṽ,
///   outᵢ = Σ_{t≠s} aᵢₜ·V_t + aᵢₛ·v*ᵢ = Attention(Q,K,V)ᵢ + aᵢₛ·(v*ᵢ − V_s)
///
/// computed in the residual form, per head, so no per-query copy of V and no
/// queries × tokens × d buffer is ever built. A subject with `addsValue` keeps
/// V_s and adds aᵢₛ·v*ᵢ (its token's value becomes V_s + v*ᵢ). Each subject may carry its own
/// options (λ, w); `options` applies to those that do not. Everything is made of engine
/// operations with backward passes, so adapters train through it.
///
/// q: [B, N, H·d] (queries), k, v: [B, T, H·d] (text keys and values).
public func nestedCrossAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                 subjects: [NestedSubject], options: NestedAttentionOptions = .init()) -> Tensor {
    let (b, t) = (q.shape[0], k.shape[1])
    let active = subjects.filter { s in s.tokenIndex.contains { $0 != nil } }
    // No placeholder token anywhere: exactly the plain layer (a token weight has nothing to weigh).
    if active.isEmpty { return F.attention(query: q, key: k, value: v, heads: heads) }
    for s in active {
        precondition(s.tokenIndex.count == b, "nested attention: \(s.tokenIndex.count) token indices for batch \(b)")
        for i in s.tokenIndex.compactMap({ $0 }) { precondition(i >= 0 && i < t, "subject token \(i) outside 0..<\(t)") }
        precondition(s.keys.shape[0] == 1 || s.keys.shape[0] == b, "nested keys must have batch 1 or \(b), got \(s.keys.shape)")
        precondition(s.values.shape[0] == 1 || s.values.shape[0] == b, "nested values must have batch 1 or \(b), got \(s.values.shape)")
    }
    for item in 0..<b {
        // The residual form subtracts V_s once per subject: two subjects on one token would double-count it.
        let claimed = active.compactMap { $0.tokenIndex[item] }
        precondition(Set(claimed).count == claimed.count, "nested attention: two subjects share token \(claimed) in batch item \(item)")
    }
    // Item by item: one without any subject token is exactly the plain layer (bit for bit, as
    // F.attention computes every batch item independently), so the unconditional half of
    // guidance is untouched; only items with a subject pay for the explicit probabilities.
    // Without gradients, the fused kernel (same arithmetic, no head-major copies).
    let recordsGradient = Autograd.isEnabled
        && ([q, k, v] + active.flatMap { [$0.keys, $0.values] }).contains { $0.needsGrad }
    func item(_ x: Tensor, _ i: Int) -> Tensor { b == 1 ? x : x.slice(axis: 0, i..<(i + 1)) }
    let outputs = (0..<b).map { i -> Tensor in
        let here = active.compactMap { s in s.tokenIndex[i].map { (token: $0, subject: s) } }
        let (qi, ki, vi) = (item(q, i), item(k, i), item(v, i))
        if here.isEmpty { return F.attention(query: qi, key: ki, value: vi, heads: heads) }
        if !recordsGradient {
            return nestedItemFused(query: qi, key: ki, value: vi, heads: heads, subjects: here, item: i, options: options)
        }
        return nestedItem(query: qi, key: ki, value: vi, heads: heads, subjects: here, item: i, options: options)
    }
    return b == 1 ? outputs[0] : F.concat(outputs, axis: 0)
}

/// One batch item (q: [1, N, H·d], k, v: [1, T, H·d]) with at least one subject token.
private func nestedItem(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                        subjects: [(token: Int, subject: NestedSubject)], item: Int,
                        options: NestedAttentionOptions) -> Tensor {
    let (n, width, t) = (q.shape[1], q.shape[2], k.shape[1])
    let d = width / heads
    // Text attention probabilities per head: [H, N, T].
    let qh = q.reshaped([n, heads, d]).permuted([1, 0, 2])
    let kh = k.reshaped([t, heads, d]).permuted([1, 0, 2])
    var logits = F.matmul(qh, kh, transposeB: true).scaled(1 / Float(d).squareRoot())
    let weighted = subjects.filter { ($0.subject.options ?? options).tokenWeight != 1 }
    if !weighted.isEmpty {
        // log w on each weighted subject's token logit.
        let bias = Tensor(zeros: [1, 1, t])
        for (token, subject) in weighted { bias.data[token] = Float(log(Double((subject.options ?? options).tokenWeight))) }
        logits = logits + bias
    }
    let probabilities = F.softmax(logits)
    let vh = v.reshaped([t, heads, d]).permuted([1, 0, 2])
    // Attention(Q,K,V) with these probabilities, back to [1, N, H·d]; then a_s·(v* − V_s) per subject.
    var out = F.matmul(probabilities, vh).permuted([1, 0, 2]).reshaped([1, n, width])
    for (s, subject) in subjects {
        var vStar = F.attention(query: q, key: batchItem(subject.keys, item), value: batchItem(subject.values, item),
                                heads: heads).reshaped([1, n, heads, d])
        let aS = probabilities.slice(axis: 2, s..<(s + 1)).reshaped([heads, n]).permuted([1, 0]).reshaped([1, n, heads, 1])
        let vS = v.slice(axis: 1, s..<(s + 1)).reshaped([1, 1, heads, d])
        if let lambda = (subject.options ?? options).valueNormalization {
            // ‖v*ᵢ‖ per head → λ·‖V_s‖.
            let norms = F.sqrt(F.square(vStar).sum(axes: [3], keepDims: true) + 1e-12)
            let target = F.sqrt(F.square(vS).sum(axes: [3], keepDims: true) + 1e-12) * lambda
            vStar = vStar / norms * target
        }
        out = out + (aS * (subject.addsValue ? vStar : vStar - vS)).reshaped([1, n, width])
    }
    return out
}

/// Batch item `item` of a [B, M, C] tensor, or the tensor itself when its batch is 1 (shared by all items).
func batchItem(_ x: Tensor, _ item: Int) -> Tensor {
    x.shape[0] == 1 ? x : x.slice(axis: 0, item..<(item + 1))
}
