import Foundation
import NestEngine
import NestIO

/// transformers' `CLIPImageProcessor` settings (`preprocessor_config.json`,
/// kept in a pipeline's `feature_extractor/` folder). Absent keys take the
/// processor's defaults (224 px, bicubic, OpenAI CLIP mean and std).
public struct CLIPImageProcessorConfig: Decodable, Sendable, Equatable {
    public enum Size: Sendable, Equatable {
        /// Scale so the shorter side has this length, keeping the aspect ratio.
        case shortestEdge(Int)
        /// Scale to exactly this size.
        case exact(height: Int, width: Int)
    }

    public var doResize = true
    public var size = Size.shortestEdge(224)
    public var resample = PillowFilter.bicubic
    public var doCenterCrop = true
    public var cropSize = (height: 224, width: 224)
    public var doRescale = true
    public var rescaleFactor = 1.0 / 255
    public var doNormalize = true
    public var imageMean: [Double] = [0.48145466, 0.4578275, 0.40821073]
    public var imageStd: [Double] = [0.26862954, 0.26130258, 0.27577711]

    public static func == (a: Self, b: Self) -> Bool {
        a.doResize == b.doResize && a.size == b.size && a.resample == b.resample && a.doCenterCrop == b.doCenterCrop
            && a.cropSize == b.cropSize && a.doRescale == b.doRescale && a.rescaleFactor == b.rescaleFactor
            && a.doNormalize == b.doNormalize && a.imageMean == b.imageMean && a.imageStd == b.imageStd
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case doResize = "do_resize", size, resample, doCenterCrop = "do_center_crop", cropSize = "crop_size"
        case doRescale = "do_rescale", rescaleFactor = "rescale_factor", doNormalize = "do_normalize"
        case imageMean = "image_mean", imageStd = "image_std", doPad = "do_pad"
    }

    /// `{"shortest_edge": n}`, `{"height": h, "width": w}`, or a bare number (older files).
    struct SizeDict: Decodable {
        var shortestEdge, longestEdge, height, width: Int?
        enum CodingKeys: String, CodingKey {
            case shortestEdge = "shortest_edge", longestEdge = "longest_edge", height, width
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        doResize = try c.decodeIfPresent(Bool.self, forKey: .doResize) ?? doResize
        if let n = try? c.decode(Int.self, forKey: .size) {
            size = .shortestEdge(n)  // CLIP reads a bare size as the shortest edge
        } else if let dict = try c.decodeIfPresent(SizeDict.self, forKey: .size) {
            if dict.longestEdge != nil { throw ModelConfigError("size.longest_edge is not supported") }
            if let s = dict.shortestEdge {
                size = .shortestEdge(s)
            } else if let h = dict.height, let w = dict.width {
                size = .exact(height: h, width: w)
            } else {
                throw ModelConfigError("size needs shortest_edge, or height and width")
            }
        }
        if let code = try c.decodeIfPresent(Int.self, forKey: .resample) { resample = try PillowFilter(code: code) }
        doCenterCrop = try c.decodeIfPresent(Bool.self, forKey: .doCenterCrop) ?? doCenterCrop
        if let n = try? c.decode(Int.self, forKey: .cropSize) {
            cropSize = (n, n)
        } else if let dict = try c.decodeIfPresent(SizeDict.self, forKey: .cropSize) {
            guard let h = dict.height, let w = dict.width else { throw ModelConfigError("crop_size needs height and width") }
            cropSize = (h, w)
        }
        doRescale = try c.decodeIfPresent(Bool.self, forKey: .doRescale) ?? doRescale
        rescaleFactor = try c.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? rescaleFactor
        doNormalize = try c.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? doNormalize
        if let mean = try c.decodeIfPresent(OneOrMany<Double>.self, forKey: .imageMean) {
            imageMean = try mean.expanded(3, key: "image_mean")
        }
        if let std = try c.decodeIfPresent(OneOrMany<Double>.self, forKey: .imageStd) {
            imageStd = try std.expanded(3, key: "image_std")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .doPad) == true { throw ModelConfigError("do_pad true is not supported") }
        let sizes: [Int] = switch size {
        case .shortestEdge(let s): [s]
        case .exact(let h, let w): [h, w]
        }
        guard (sizes + [cropSize.height, cropSize.width]).allSatisfy({ $0 > 0 }) else {
            throw ModelConfigError("size and crop_size must be positive")
        }
    }
}

/// CLIP image preprocessing as transformers' PIL-backed `CLIPImageProcessor`
/// does it: resize (Pillow's filters, on 8-bit pixels), center crop (padding
/// with black when the image is smaller), rescale to 0…1, normalize per channel.
public struct CLIPImageProcessor: Sendable {
    public var config: CLIPImageProcessorConfig

    public init(config: CLIPImageProcessorConfig = .init()) { self.config = config }

    /// Reads `preprocessor_config.json` from a folder (e.g. a pipeline's `feature_extractor/`).
    public static func load(folder: URL) throws -> CLIPImageProcessor {
        let url = folder.appendingPathComponent("preprocessor_config.json")
        return CLIPImageProcessor(config: try decodeConfig(CLIPImageProcessorConfig.self, from: url))
    }

    /// The size the resize step produces for a `width × height` image, as (height, width).
    public func resizedSize(width: Int, height: Int) -> (height: Int, width: Int) {
        switch config.size {
        case .exact(let h, let w): return (h, w)
        case .shortestEdge(let s):
            let (short, long) = width <= height ? (width, height) : (height, width)
            // Python's int(s * long / short): float division, then truncation.
            let newLong = Int(Double(s * long) / Double(short))
            return width <= height ? (newLong, s) : (s, newLong)
        }
    }

    /// An 8-bit RGB image (alpha, if any, is dropped as a conversion to RGB drops it)
    /// → pixel values [1, H, W, 3] (NHWC), H × W the crop size.
    public func callAsFunction(_ image: RGBImage) -> Tensor {
        preprocess(width: image.width, height: image.height, pixels: image.pixels)
    }

    /// `pixels`: RGB interleaved, row-major, `width * height * 3` bytes.
    public func preprocess(width: Int, height: Int, pixels: [UInt8]) -> Tensor {
        precondition(pixels.count == width * height * 3, "\(pixels.count) bytes for a \(width)×\(height) RGB image")
        var (w, h, bytes) = (width, height, pixels)
        if config.doResize {
            let target = resizedSize(width: w, height: h)
            if target.width != w || target.height != h {
                bytes = pillowResize(bytes, width: w, height: h, outWidth: target.width, outHeight: target.height,
                                     filter: config.resample)
                (w, h) = (target.width, target.height)
            }
        }
        if config.doCenterCrop {
            (w, h, bytes) = centerCrop(bytes, width: w, height: h, to: config.cropSize)
        }
        // Rescale in double then round to float, normalize in float: numpy's order and precision.
        let scale = config.doRescale ? config.rescaleFactor : 1
        let out = Tensor(uninitialized: [1, h, w, 3])
        for i in 0..<(w * h * 3) { out.data[i] = Float(Double(bytes[i]) * scale) }
        normalize(out)
        return out
    }

    /// Normalizes rescaled RGB values ([..., 3], channels last) in place by the
    /// config's mean and std, where it asks for it: the last step of
    /// `preprocess`, and what the trainers apply to their own augmented crops.
    public func normalize(_ x: Tensor) {
        guard config.doNormalize else { return }
        let mean = config.imageMean.map { Float($0) }, std = config.imageStd.map { Float($0) }
        for i in 0..<x.count { x.data[i] = (x.data[i] - mean[i % 3]) / std[i % 3] }
    }
}

/// transformers' center crop: the window starts at floor((size − crop) / 2); a
/// crop larger than the image pads it with zeros first, centred (ceil of half the excess on top/left).
func centerCrop(_ bytes: [UInt8], width: Int, height: Int,
                to crop: (height: Int, width: Int)) -> (width: Int, height: Int, bytes: [UInt8]) {
    func floorDiv2(_ v: Int) -> Int { v >= 0 ? v / 2 : -((-v + 1) / 2) }
    var top = floorDiv2(height - crop.height), left = floorDiv2(width - crop.width)
    var (src, w, h) = (bytes, width, height)
    if top < 0 || left < 0 {
        let (padH, padW) = (max(crop.height, height), max(crop.width, width))
        let (padTop, padLeft) = ((padH - height + 1) / 2, (padW - width + 1) / 2)
        var padded = [UInt8](repeating: 0, count: padH * padW * 3)
        for y in 0..<height {
            let d = ((y + padTop) * padW + padLeft) * 3
            padded.replaceSubrange(d..<(d + width * 3), with: bytes[(y * width * 3)..<((y + 1) * width * 3)])
        }
        (src, w, h) = (padded, padW, padH)
        top += padTop
        left += padLeft
    }
    // After padding the window may still start above/left of the canvas; numpy's slice clamps it.
    let (y0, x0) = (max(top, 0), max(left, 0))
    let (y1, x1) = (min(top + crop.height, h), min(left + crop.width, w))
    var out = [UInt8]()
    out.reserveCapacity((y1 - y0) * (x1 - x0) * 3)
    for y in y0..<y1 { out += src[((y * w + x0) * 3)..<((y * w + x1) * 3)] }
    return (x1 - x0, y1 - y0, out)
}
