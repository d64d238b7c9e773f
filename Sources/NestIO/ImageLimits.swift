import Foundation

/// How large an image the library agrees to decode, checked from the file's
/// header (PNG IHDR, JPEG SOF) before any pixel buffer exists: a 1 MB PNG can
/// claim 20000×20000 pixels, which would take gigabytes and many seconds.
///
/// The limits sit well above what diffusion needs (subject photos are resized
/// to the image encoder's 224 pixels, init images to at most a few thousand
/// pixels per side) and above full-resolution photos of current phone cameras
/// (48 MP is 8064×6048), so only absurd or hostile files are refused.
public enum ImageLimits {
    /// Largest accepted width or height, in pixels.
    public static let maxSide = 16384
    /// Largest accepted width × height (50 megapixels: about 200 MB as RGBA).
    public static let maxPixels = 50_000_000
    /// Largest image file read at all, in bytes.
    public static let maxFileBytes = 512 << 20
    /// Largest decompressed PNG text chunk kept (generation settings are a few hundred bytes).
    public static let maxTextBytes = 1 << 20

    /// Why `width`×`height` is refused, or nil when it fits.
    public static func refusal(width: Int, height: Int) -> String? {
        if width > maxSide || height > maxSide {
            return "image is \(width)x\(height) pixels; the limit is \(maxSide) per side"
        }
        if width * height > maxPixels {
            return "image is \(width)x\(height) pixels (\(width * height)); the limit is \(maxPixels) pixels"
        }
        return nil
    }
}
