import Foundation
import NestModels

/// The image sizes a model folder takes, from its UNet and VAE configs alone:
/// enough to check a request's size before any weight is read.
public struct PipelineGeometry: Sendable, Equatable {
    /// Image pixels per latent pixel (8 for Stable Diffusion's VAE).
    public let vaeFactor: Int
    /// How often the UNet halves its latents (8 for SD 1.x).
    public let unetFactor: Int
    /// The native size: the UNet's sample_size × the VAE factor.
    public let defaultSize: (height: Int, width: Int)

    public static func == (a: Self, b: Self) -> Bool {
        a.vaeFactor == b.vaeFactor && a.unetFactor == b.unetFactor && a.defaultSize == b.defaultSize
    }

    public init(vaeFactor: Int, unetFactor: Int, sampleSize: [Int]?) {
        self.vaeFactor = vaeFactor
        self.unetFactor = unetFactor
        let sample = sampleSize ?? [64]
        defaultSize = (sample[0] * vaeFactor, sample[sample.count - 1] * vaeFactor)
    }

    /// Reads `unet/config.json` and `vae/config.json` of a diffusers folder.
    public static func read(folder: ModelFolder) throws -> PipelineGeometry {
        let unet = try UNet2DConditionConfig.load(from: try folder.component("unet").appendingPathComponent("config.json"))
        let vae = try decodeConfig(AutoencoderKLConfig.self, from: try folder.component("vae").appendingPathComponent("config.json"))
        return PipelineGeometry(vaeFactor: 1 << (vae.blockOutChannels.count - 1), unetFactor: 1 << (unet.levels.count - 1),
                                sampleSize: unet.sampleSize)
    }

    /// The size a request generates: its width and height, else the init image's
    /// size rounded down to the VAE factor (image-to-image), else the model's own.
    public func size(of c: GenerationConfiguration) -> (height: Int, width: Int) {
        let image = c.initImage.map { ($0.height - $0.height % vaeFactor, $0.width - $0.width % vaeFactor) }
        return (c.height ?? image?.0 ?? defaultSize.height, c.width ?? image?.1 ?? defaultSize.width)
    }

    /// Width and height must be whole latents the UNet can halve all the way down.
    public func validate(_ c: GenerationConfiguration) throws {
        let multiple = vaeFactor * unetFactor
        let size = self.size(of: c)
        for (name, value, given) in [("width", size.width, c.width), ("height", size.height, c.height)] where value % multiple != 0 || value == 0 {
            let reason = "is not a multiple of \(multiple) (the VAE's \(vaeFactor)× × the UNet's \(unetFactor)× downsampling)"
            if given == nil, let image = c.initImage {
                throw GenerationRequestError(field: "init_image", "is \(image.width)×\(image.height); its \(name) rounded down to a multiple of \(vaeFactor), \(value), \(reason); give width and height to resize it")
            }
            throw GenerationRequestError(field: name, "\(value) \(reason)")
        }
    }
}
