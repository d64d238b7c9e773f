import CImageCodecs
import Foundation

extension ImageFile {
    /// Encodes `image` as JPEG with libjpeg-turbo. JPEG has no alpha, so any
    /// alpha is ignored. `grayscale` stores BT.601 luma only (decoding gives
    /// R = G = B). `quality` is 1...100; 90 keeps artifacts well below what
    /// diffusion models notice.
    public static func encodeJPEG(_ image: RGBImage, quality: Int = 90, progressive: Bool = false,
                                  grayscale: Bool = false) throws -> Data {
        try image.validate(file: nil)
        guard (1...100).contains(quality) else {
            throw ImageError(.invalidArgument, file: nil, reason: "JPEG quality \(quality) is outside 1...100")
        }
        let samples = grayscale ? luma(image.pixels) : image.pixels
        return try encodeJPEGSamples(samples, width: image.width, height: image.height,
                                     components: grayscale ? 1 : 3, quality: quality, progressive: progressive)
    }

    /// Raw entry to the encoder: `components` is 1 (gray), 3 (RGB) or 4
    /// (CMYK, stored as given with an Adobe marker). Kept internal; tests use
    /// it to build CMYK files.
    static func encodeJPEGSamples(_ samples: [UInt8], width: Int, height: Int, components: Int,
                                  quality: Int, progressive: Bool) throws -> Data {
        var output = nest_buffer()
        defer { nest_buffer_free(&output) }
        let (status, message) = samples.withUnsafeBufferPointer { pixels in
            withCodecMessage { message, capacity in
                nest_jpeg_encode(pixels.baseAddress, UInt32(width), UInt32(height), UInt32(components),
                                 Int32(quality), progressive ? 1 : 0, &output, message, capacity)
            }
        }
        guard status == Int32(NEST_IMG_OK.rawValue), let bytes = output.data else {
            throw ImageError(codecStatus: status, message: message, format: "JPEG", file: nil, encoding: true)
        }
        return Data(bytes: bytes, count: output.length)
    }

    /// BT.601 luma, the weighting JPEG's own YCbCr uses, rounded to nearest.
    private static func luma(_ rgb: [UInt8]) -> [UInt8] {
        stride(from: 0, to: rgb.count, by: 3).map { i in
            let y = 0.299 * Float(rgb[i]) + 0.587 * Float(rgb[i + 1]) + 0.114 * Float(rgb[i + 2])
            return UInt8(min(255, y.rounded()))
        }
    }
}
