import Foundation
import NestDiffusion
import NestEngine
import NestModels

/// A CLIP-style dual encoder: a text tower and a vision tower, each with a
/// bias-free projection into a shared embedding space, and a learned
/// temperature. Parameter paths are transformers' `CLIPModel` names
/// (`text_model.…`, `vision_model.…`, `visual_projection.weight`,
/// `text_projection.weight`, `logit_scale`), so the towers can later be
/// written out as CLIPTextModelWithProjection / CLIPVisionModelWithProjection.
public final class CLIPDualEncoder: Module {
    public let text: CLIPTextModel
    public let vision: CLIPVisionModel
    /// log of the similarity scale, a scalar; starts at log(1/0.07) as in CLIP.
    public let logit_scale: Tensor

    /// CLIP caps exp(logit_scale) at 100 so training cannot sharpen the softmax without bound.
    public static let maximumLogitScale: Float = 100

    public init(text textConfig: CLIPTextConfig, vision visionConfig: CLIPVisionConfig) throws {
        guard textConfig.projectionDim == visionConfig.projectionDim else {
            throw ModelConfigError("CLIP: text projection_dim \(textConfig.projectionDim) differs from vision projection_dim \(visionConfig.projectionDim)")
        }
        text = CLIPTextModel(config: textConfig, withProjection: true)
        vision = CLIPVisionModel(config: visionConfig, withProjection: true)
        logit_scale = Tensor(scalar: logf(1 / 0.07))
        super.init()
        // The towers' own modules, registered under CLIPModel's names.
        child("text_model", text.text_model)
        child("vision_model", vision.vision_model)
        child("visual_projection", vision.visual_projection!)
        child("text_projection", text.text_projection!)
        parameter("logit_scale", logit_scale)
    }

    /// L2-normalized text embeddings [B, P] for token ids.
    public func textEmbeddings(ids: [[Int]]) -> Tensor { unitRows(text.forward(ids: ids).textEmbeds!) }

    /// L2-normalized image embeddings [B, P] for preprocessed pixels [B, S, S, C].
    public func imageEmbeddings(pixels: Tensor) -> Tensor { unitRows(vision.forward(pixels: pixels).imageEmbeds!) }

    /// Scaled cosine similarities [images, texts].
    public func logitsPerImage(pixels: Tensor, ids: [[Int]]) -> Tensor {
        let image = imageEmbeddings(pixels: pixels), text = textEmbeddings(ids: ids)
        return F.matmul(image, text, transposeB: true) * F.exp(logit_scale)
    }

    /// Keeps exp(logit_scale) ≤ 100, as CLIP clamps the parameter after each update.
    public func clampLogitScale() {
        logit_scale.data[0] = min(logit_scale.data[0], logf(Self.maximumLogitScale))
    }
}

/// Trains a `CLIPDualEncoder` with CLIP's symmetric contrastive loss: in a
/// batch of matching (image, caption) pairs, each image must pick out its own
/// caption among all captions and each caption its own image (cross-entropy
/// over the scaled cosine similarities, averaged over both directions).
public final class CLIPTrainer {
    public let model: CLIPDualEncoder
    public let tokenizer: CLIPTokenizer
    public let options: OptimizationOptions
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public var state = TrainingState()

    /// Every trained tensor by checkpoint name (for `TrainingCheckpoint`).
    public var parameters: [(path: String, tensor: Tensor)] { optimizer.parameters }

    public init(model: CLIPDualEncoder, tokenizer: CLIPTokenizer, options: OptimizationOptions = .init()) throws {
        guard tokenizer.maxLength <= model.text.config.maxPositionEmbeddings else {
            throw ModelConfigError("CLIP: the tokenizer pads to \(tokenizer.maxLength) tokens but the text model has \(model.text.config.maxPositionEmbeddings) positions")
        }
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        model.unfreeze()
        optimizer = options.makeOptimizer(model.trainableParameters)
        schedule = options.makeSchedule()
        state.seed = options.seed
    }

    public func ids(_ captions: [String]) -> [[Int]] { captions.map { tokenizer.encode($0) } }

    /// The contrastive loss of a batch (recorded for backward when training).
    public func loss(pixels: Tensor, captions: [String]) -> Tensor {
        let logits = model.logitsPerImage(pixels: pixels, ids: ids(captions))
        let targets = Array(0..<captions.count)
        let imageToText = F.crossEntropy(logits, targets: targets)
        let textToImage = F.crossEntropy(logits.transposed(0, 1), targets: targets)
        return (imageToText + textToImage).scaled(0.5)
    }

    /// One update on preprocessed `pixels` [B, S, S, C] and their captions; returns the loss.
    @discardableResult
    public func step(pixels: Tensor, captions: [String]) -> Float {
        precondition(pixels.shape[0] == captions.count, "CLIPTrainer: \(captions.count) captions for \(pixels.shape[0]) images")
        let loss = loss(pixels: pixels, captions: captions)
        loss.backward()
        applyUpdate(optimizer, schedule: schedule, options: options, step: state.step)
        model.clampLogitScale()
        state.step += 1
        return loss.item
    }
}
