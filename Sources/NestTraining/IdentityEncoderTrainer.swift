import Foundation
import NestEngine
import NestModels

/// Trains an image encoder to tell subjects apart: two photos of one subject
/// must land closer together than photos of any other subject in the batch.
///
/// An encoder trained only against captions (CLIP's objective) keeps what the
/// captions name — background, style, framing — and little of what makes one
/// individual differ from another, which is what Nested Attention has to
/// carry from the reference into the generation. Each record's image and one
/// of its references (drawn anew at every step) form a positive pair; the
/// loss is InfoNCE over the cosine similarities of the projected embeddings in
/// both directions, CLIP's contrastive loss with images on both sides. Records
/// of the same subject in one batch (they share a reference) are left out of
/// each other's negatives.
public final class IdentityEncoderTrainer {
    public let encoder: CLIPVisionModel
    public let options: OptimizationOptions
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public var state = TrainingState()

    /// Similarities are divided by this before the softmax (fixed: a learned
    /// scale, as CLIP's, sharpens until the hardest negatives dominate on
    /// small subject sets).
    public static let temperature: Float = 0.1
    /// Added to the logit of a pair known to show one subject, so it counts neither way.
    static let excluded: Float = -1e4

    public init(encoder: CLIPVisionModel, options: OptimizationOptions = .init()) throws {
        guard encoder.visual_projection != nil else {
            throw ModelConfigError("image encoder: identity training needs its visual_projection (CLIPVisionModelWithProjection)")
        }
        self.encoder = encoder
        self.options = options
        encoder.unfreeze()
        optimizer = options.makeOptimizer(encoder.trainableParameters)
        schedule = options.makeSchedule()
        state.seed = options.seed
    }

    /// The loss of a batch: `anchors` and `positives` [B, S, S, C] (preprocessed),
    /// row i of both showing one subject; `sameSubject(i, j)` for i ≠ j says
    /// that rows i and j show one subject too.
    public func loss(anchors: Tensor, positives: Tensor, sameSubject: (Int, Int) -> Bool) -> Tensor {
        let n = anchors.shape[0]
        let a = unitRows(encoder.forward(pixels: anchors).imageEmbeds!)
        let p = unitRows(encoder.forward(pixels: positives).imageEmbeds!)
        var mask = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n where i != j && sameSubject(i, j) { mask[i * n + j] = Self.excluded } }
        let logits = F.matmul(a, p, transposeB: true).scaled(1 / Self.temperature) + Tensor(mask, shape: [n, n])
        let targets = Array(0..<n)
        return (F.crossEntropy(logits, targets: targets) + F.crossEntropy(logits.transposed(0, 1), targets: targets)).scaled(0.5)
    }

    /// One update; returns the loss.
    @discardableResult
    public func step(anchors: Tensor, positives: Tensor, sameSubject: (Int, Int) -> Bool) -> Float {
        precondition(anchors.shape == positives.shape, "IdentityEncoderTrainer: anchors \(anchors.shape), positives \(positives.shape)")
        let loss = loss(anchors: anchors, positives: positives, sameSubject: sameSubject)
        loss.backward()
        applyUpdate(optimizer, schedule: schedule, options: options, step: state.step)
        state.step += 1
        return loss.item
    }
}

/// Each row scaled to unit length (the last axis).
func unitRows(_ x: Tensor) -> Tensor {
    x / F.sqrt(F.square(x).sum(axes: [x.rank - 1], keepDims: true).addingScalar(1e-12))
}
