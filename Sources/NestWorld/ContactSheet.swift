import NestIO

/// Tiles equal-sized images into a grid with a 2-pixel gutter: one file to
/// eyeball a whole batch of scenes.
public enum ContactSheet {
    public static func make(_ images: [RGBImage], columns: Int, gutter: Int = 2) -> RGBImage {
        let w = images.first?.width ?? 1, h = images.first?.height ?? 1
        let rows = (images.count + columns - 1) / columns
        let sheetW = columns * (w + gutter) + gutter, sheetH = rows * (h + gutter) + gutter
        var pixels = [UInt8](repeating: 255, count: sheetW * sheetH * 3)
        for (k, image) in images.enumerated() {
            let ox = gutter + (k % columns) * (w + gutter), oy = gutter + (k / columns) * (h + gutter)
            for y in 0..<min(h, image.height) {
                for x in 0..<min(w, image.width) {
                    for ch in 0..<3 {
                        pixels[((oy + y) * sheetW + ox + x) * 3 + ch] = image.pixels[(y * image.width + x) * 3 + ch]
                    }
                }
            }
        }
        return try! RGBImage(width: sheetW, height: sheetH, pixels: pixels)
    }
}

extension RGBImage {
    /// Nearest-neighbour enlargement by an integer factor (for looking at 64-px images).
    public func enlarged(_ factor: Int) -> RGBImage {
        var out = [UInt8](repeating: 0, count: width * height * factor * factor * 3)
        let w = width * factor
        for y in 0..<(height * factor) {
            for x in 0..<w {
                let s = ((y / factor) * width + x / factor) * 3, d = (y * w + x) * 3
                out[d] = pixels[s]; out[d + 1] = pixels[s + 1]; out[d + 2] = pixels[s + 2]
            }
        }
        return try! RGBImage(width: w, height: height * factor, pixels: out)
    }
}
