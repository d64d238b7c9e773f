import NestEngine
import NestModels

/// Teaches a UNet to attend to the subject's noun where the subject is.
///
/// Nested Attention changes a generation by a_s·(v* − v): only where the
/// model's own cross-attention reads the subject token. A UNet trained on
/// the miniature world with the diffusion loss alone attended every word
/// alike at every position (inside/outside-the-subject ratio 0.9–1.1 in all
/// layers, `tools/probe_attention.py`) and conditioned globally, so there was
/// nothing for Nested Attention to steer. Real text-to-image models localize
/// nouns because their captions make it pay; with few words and a small
/// model it does not happen by itself, so — as FastComposer supervises its
/// subjects' cross-attention with segmentation masks — the renderer's masks
/// supervise it here: per cross-attention layer and sample, the mean
/// attention to the noun outside the subject minus the mean inside (a
/// balanced L1 term in [−1, 1]), averaged, weighted and added to the loss.
public struct AttentionLocalization: Codable, Sendable, Equatable {
    /// Weight of the localization term against the diffusion loss.
    public var weight: Float
    /// Nouns to localize: in each caption the first of these words is the
    /// subject's (the world's captions name the subject before a companion).
    public var words: [String]

    public init(weight: Float, words: [String]) { self.weight = weight; self.words = words }

    enum CodingKeys: String, CodingKey, CaseIterable { case weight, words }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        weight = Float(try c.decode(Double.self, forKey: .weight))
        words = try c.decode([String].self, forKey: .words)
    }

    func validate() throws {
        let check = ConfigCheck(section: "attention_localization")
        try check.real("weight", weight, .nonNegative)
        if words.isEmpty { throw ModelConfigError("attention_localization.words must name at least one word") }
        for word in words { try check.text("words", word) }
    }
}

/// Plain cross-attention that also keeps, with gradients, the heads' mean
/// attention of every query to one text position per batch item.
final class LocalizingAttentionProcessor: AttentionProcessor {
    /// Per batch item, the text position to record (nil: none).
    var tokens: [Int?] = []
    /// This step's maps, [B, N] each (one per call; one call per step here).
    var maps: [Tensor] = []

    func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
        guard let context else { return PlainAttentionProcessor().attend(layer, hidden: hidden, context: nil) }
        let q = layer.to_q(hidden), (k, v) = layer.contextProjections(context)
        let heads = layer.heads
        let out = F.attention(query: q, key: k, value: v, heads: heads)
        let (b, n, width, t) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        let d = width / heads
        if tokens.contains(where: { $0 != nil }) {
            // Probabilities [B·H, N, T], then the recorded column through a one-hot [B·H, T, 1].
            let qh = q.reshaped([b, n, heads, d]).permuted([0, 2, 1, 3]).reshaped([b * heads, n, d])
            let kh = k.reshaped([b, t, heads, d]).permuted([0, 2, 1, 3]).reshaped([b * heads, t, d])
            let p = F.softmax(F.matmul(qh, kh, transposeB: true).scaled(1 / Float(d).squareRoot()))
            let pick = Tensor(zeros: [b * heads, t, 1])
            for (item, token) in tokens.enumerated() {
                guard let token else { continue }
                for h in 0..<heads { pick.data[(item * heads + h) * t + token] = 1 }
            }
            maps.append(F.matmul(p, pick).reshaped([b, heads, n]).sum(axes: [1]).scaled(1 / Float(heads)))
        }
        return layer.to_out[0](out)
    }
}

extension AttentionLocalization {
    /// The localization term for maps recorded at square resolutions and
    /// masks [B, H, W, 1] in 0...1 (1: subject). Items without a token, or
    /// whose mask is empty or full at a map's resolution, do not count.
    static func loss(maps: [Tensor], tokens: [Int?], masks: Tensor) -> Tensor? {
        let (b, h, w) = (masks.shape[0], masks.shape[1], masks.shape[2])
        var terms: [Tensor] = []
        var counted = 0
        for map in maps {
            let n = map.shape[1], side = Int(Float(n).squareRoot().rounded())
            guard side * side == n, h % side == 0, w % side == 0 else { continue }
            let (fy, fx) = (h / side, w / side)
            // Signed weights: +1/|outside| outside, −1/|inside| inside, by mask coverage per cell.
            let weights = Tensor(zeros: [b, n])
            for item in 0..<b where tokens[item] != nil {
                var cover = [Float](repeating: 0, count: n)
                for y in 0..<h { for x in 0..<w {
                    cover[(y / fy) * side + x / fx] += masks.data[(item * h + y) * w + x] / Float(fy * fx)
                } }
                let inside = cover.reduce(0, +), outside = Float(n) - inside
                guard inside > 0.5, outside > 0.5 else { continue }
                for i in 0..<n { weights.data[item * n + i] = (1 - cover[i]) / outside - cover[i] / inside }
                counted += 1
            }
            terms.append((map * weights).sum())
        }
        guard counted > 0 else { return nil }
        return terms.dropFirst().reduce(terms[0], +).scaled(1 / Float(counted))
    }
}
