import NestEngine

/// The single-token baseline: the subject lives in one vector that replaces
/// the placeholder token's text-encoder output, so every cross-attention
/// query reads the same value for it — the limitation Nested Attention
/// removes. The vector is `token_proj` of the mean encoder token.
extension PersonalizationAdapter {
    /// One context vector [B, 1, context width] from encoder tokens [B, M, D].
    public func subjectVector(_ tokens: Tensor) -> Tensor {
        guard let proj = token_proj else {
            preconditionFailure("subjectVector needs a single-token adapter, this one is '\(config.kind.rawValue)'")
        }
        return proj(tokens.mean(axes: [1], keepDims: true))
    }
}

/// Replaces row `positions[b]` of each batch item's context with `vector`
/// (nil: leave the item alone, e.g. the unconditional branch). Differentiable
/// in both inputs. context: [B, T, D]; vector: [B or 1, 1, D].
public func replacingToken(in context: Tensor, positions: [Int?], with vector: Tensor) -> Tensor {
    let (b, t, d) = (context.shape[0], context.shape[1], context.shape[2])
    precondition(positions.count == b, "replacingToken: \(positions.count) positions for batch \(b)")
    precondition(vector.shape.last == d, "replacingToken: vector width \(vector.shape) vs context width \(d)")
    let mask = Tensor(zeros: [b, t, 1])
    for (item, position) in positions.enumerated() {
        if let position {
            precondition(position >= 0 && position < t, "replacingToken: position \(position) outside 0..<\(t)")
            mask.data[item * t + position] = 1
        }
    }
    let keep = Tensor(ones: [b, t, 1]) - mask
    return context * keep + mask * vector
}
