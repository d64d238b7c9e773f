/// An 8-bit RGB image with optional, separate alpha.
///
/// Everything the diffusion engine consumes or produces passes through this
/// one layout, so decoders normalize every PNG/JPEG variant to it. Alpha is
/// kept apart rather than composited onto a background: the RGB is the color
/// as stored, and callers decide what transparency means for them (an
/// inpainting mask, a flatten, or nothing).
public struct RGBImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// RGB interleaved, row-major, no row padding: `width * height * 3` bytes.
    public var pixels: [UInt8]
    /// One byte per pixel (`width * height`), present when the source had
    /// alpha (an alpha channel or PNG tRNS transparency).
    public var alpha: [UInt8]?

    /// Checks that the buffers match the dimensions, so a bad image fails
    /// here instead of deep inside an encoder or a tensor conversion.
    public init(width: Int, height: Int, pixels: [UInt8], alpha: [UInt8]? = nil) throws {
        self.width = width
        self.height = height
        self.pixels = pixels
        self.alpha = alpha
        try validate(file: nil)
    }

    /// Builds an image from HWC-interleaved RGB floats (`width * height * 3`),
    /// mapping `range` linearly onto 0...255. Values outside the range are
    /// clamped and NaN becomes the lower bound, because model outputs do
    /// overshoot and one stray value should not fail a whole generation.
    public init(width: Int, height: Int, floats: [Float], range: ClosedRange<Float> = 0...1,
                alpha: [UInt8]? = nil) throws {
        guard range.upperBound > range.lowerBound else {
            throw ImageError(.invalidArgument, file: nil, reason: "float range \(range) is empty")
        }
        let lower = range.lowerBound
        let span = range.upperBound - range.lowerBound
        let bytes = floats.map { value -> UInt8 in
            let unit = (value - lower) / span
            guard unit > 0 else { return 0 }  // also catches NaN
            guard unit < 1 else { return 255 }
            return UInt8((unit * 255).rounded())
        }
        try self.init(width: width, height: height, pixels: bytes, alpha: alpha)
    }

    /// RGB as HWC-interleaved floats, each byte mapped linearly onto `range`
    /// (0 -> lowerBound, 255 -> upperBound). Alpha is not included.
    public func floats(range: ClosedRange<Float> = 0...1) -> [Float] {
        // A 256-entry table makes the mapping exact (no accumulated rounding)
        // and cheap for multi-megapixel images.
        let lower = range.lowerBound
        let span = range.upperBound - range.lowerBound
        let table = (0...255).map { lower + Float($0) / 255 * span }
        return pixels.map { table[Int($0)] }
    }

    public var hasAlpha: Bool { alpha != nil }

    /// The fields are mutable, so encoders re-check before handing raw
    /// buffers to C.
    func validate(file: String?) throws {
        func fail(_ reason: String) -> ImageError { ImageError(.invalidArgument, file: file, reason: reason) }
        guard width > 0, height > 0 else {
            throw fail("image dimensions \(width)x\(height) must be positive")
        }
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        let (bytes, overflow3) = count.multipliedReportingOverflow(by: 3)
        guard !overflow, !overflow3 else {
            throw fail("image dimensions \(width)x\(height) overflow")
        }
        guard pixels.count == bytes else {
            throw fail("pixel buffer has \(pixels.count) bytes; \(width)x\(height) RGB needs \(bytes)")
        }
        if let alpha, alpha.count != count {
            throw fail("alpha buffer has \(alpha.count) bytes; \(width)x\(height) needs \(count)")
        }
    }
}
