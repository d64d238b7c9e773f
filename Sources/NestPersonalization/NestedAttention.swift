import Foundation
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

    public init(tokenIndex: [Int?], keys: Tensor, values: Tensor) {
        self.tokenIndex = tokenIndex
        self.keys = keys
        self.values = values
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
}

/// Cross-attention in which each subject token's value is replaced by a
/// per-query value chosen by a nested attention over the subject's encoder
/// tokens (Patashnik et al. 2025):
///
///   aᵢ = softmax(qᵢ·Kᵀ/√d),  v*ᵢ = softmax(qᵢ·K̃ᵀ/√d)·Ṽ,
///   outᵢ = Σ_{t≠s} aᵢₜ·V_t + aᵢₛ·v*ᵢ = Attention(Q,K,V)ᵢ + aᵢₛ·(v*ᵢ − V_s)
///
/// computed in the residual form, per head, so no per-query copy of V and no
/// queries × tokens × d buffer is ever built. Everything is made of engine
/// operations with backward passes, so adapters train through it.
///
/// q: [B, N, H·d] (queries), k, v: [B, T, H·d] (text keys and values).
public func nestedCrossAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                 subjects: [NestedSubject], options: NestedAttentionOptions = .init()) -> Tensor {
    let (b, n, width) = (q.shape[0], q.shape[1], q.shape[2])
    let t = k.shape[1]
    let d = width / heads
    let active = subjects.filter { s in s.tokenIndex.contains { $0 != nil } }
    if active.isEmpty && options.tokenWeight == 1 {
        return F.attention(query: q, key: k, value: v, heads: heads)
    }
    for s in active {
        precondition(s.tokenIndex.count == b, "nested attention: \(s.tokenIndex.count) token indices for batch \(b)")
        for i in s.tokenIndex.compactMap({ $0 }) { precondition(i >= 0 && i < t, "subject token \(i) outside 0..<\(t)") }
    }
    // Text attention probabilities per head: [B·H, N, T] (queries × text tokens, no head dim).
    let qh = q.reshaped([b, n, heads, d]).permuted([0, 2, 1, 3]).reshaped([b * heads, n, d])
    let kh = k.reshaped([b, t, heads, d]).permuted([0, 2, 1, 3]).reshaped([b * heads, t, d])
    var logits = F.matmul(qh, kh, transposeB: true).scaled(1 / Float(d).squareRoot())
    if options.tokenWeight != 1 {
        // log w on each subject token's logit, per batch item.
        let bias = Tensor(zeros: [b, 1, 1, t])
        let logW = Float(log(Double(options.tokenWeight)))
        for s in active { for (item, index) in s.tokenIndex.enumerated() { if let index { bias.data[item * t + index] = logW } } }
        logits = (logits.reshaped([b, heads, n, t]) + bias).reshaped([b * heads, n, t])
    }
    let probabilities = F.softmax(logits)
    let vh = v.reshaped([b, t, heads, d]).permuted([0, 2, 1, 3]).reshaped([b * heads, t, d])
    // Base output Attention(Q,K,V), back to [B, N, H·d].
    var out = F.matmul(probabilities, vh).reshaped([b, heads, n, d]).permuted([0, 2, 1, 3]).reshaped([b, n, width])

    for subject in active {
        let keys = subject.keys.shape[0] == b ? subject.keys : broadcastBatch(subject.keys, b)
        let values = subject.values.shape[0] == b ? subject.values : broadcastBatch(subject.values, b)
        // v*: [B, N, H·d]
        var vStar = F.attention(query: q, key: keys, value: values, heads: heads)
        // Per batch item: a_s [N, H] and V_s [H·d] (zero where the item has no subject token).
        var items: [Tensor] = []
        for item in 0..<b {
            guard let s = subject.tokenIndex[item] else {
                items.append(Tensor(zeros: [1, n, width]))
                continue
            }
            let p = probabilities.slice(axis: 0, (item * heads)..<((item + 1) * heads))  // [H, N, T]
            let aS = p.slice(axis: 2, s..<(s + 1)).reshaped([heads, n]).permuted([1, 0]).reshaped([1, n, heads, 1])
            let vS = v.slice(axis: 0, item..<(item + 1)).slice(axis: 1, s..<(s + 1)).reshaped([1, 1, heads, d])
            var vStarItem = vStar.slice(axis: 0, item..<(item + 1)).reshaped([1, n, heads, d])
            if let lambda = options.valueNormalization {
                // ‖v*ᵢ‖ per head → λ·‖V_s‖.
                let norms = F.sqrt(F.square(vStarItem).sum(axes: [3], keepDims: true) + 1e-12)
                let target = F.sqrt(F.square(vS).sum(axes: [3], keepDims: true) + 1e-12) * lambda
                vStarItem = vStarItem / norms * target
            }
            items.append((aS * (vStarItem - vS)).reshaped([1, n, width]))
        }
        vStar = F.concat(items, axis: 0)
        out = out + vStar
    }
    return out
}

/// Repeats a [1, M, C] tensor along the batch (differentiably).
func broadcastBatch(_ x: Tensor, _ b: Int) -> Tensor {
    precondition(x.shape[0] == 1, "nested keys/values must have batch 1 or \(b), got \(x.shape)")
    return Tensor(zeros: [b] + Array(x.shape.dropFirst())) + x
}
