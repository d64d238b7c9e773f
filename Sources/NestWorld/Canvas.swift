import NestIO

/// A point in scene units (0...64 across whatever the image's side), y down.
public struct Point: Sendable { public var x: Float, y: Float
    public init(_ x: Float, _ y: Float) { self.x = x; self.y = y } }

/// A supersampled RGB canvas: shapes are tested at `factor`×`factor` points
/// per pixel and averaged on output, which anti-aliases every edge without
/// any per-shape coverage math.
public struct Canvas {
    public let width: Int, height: Int, factor: Int
    /// Image pixels per scene unit: scenes are painted in 64-unit coordinates
    /// and a 96- or 128-pixel image draws the same scene finer (1 keeps the
    /// 64-pixel arithmetic exactly).
    public let pixelsPerUnit: Float
    var samples: [Float]

    public init(width: Int, height: Int, factor: Int = 4, pixelsPerUnit: Float = 1, fill: WorldColor = .black) {
        self.width = width; self.height = height; self.factor = factor; self.pixelsPerUnit = pixelsPerUnit
        samples = [Float](repeating: 0, count: width * factor * height * factor * 3)
        var i = 0
        while i < samples.count { samples[i] = fill.r; samples[i + 1] = fill.g; samples[i + 2] = fill.b; i += 3 }
    }

    var sampleWidth: Int { width * factor }
    var sampleHeight: Int { height * factor }
    /// The canvas's extent in scene units.
    var sceneWidth: Float { Float(width) / pixelsPerUnit }
    var sceneHeight: Float { Float(height) / pixelsPerUnit }
    /// Samples per scene unit.
    var samplesPerUnit: Float { Float(factor) * pixelsPerUnit }

    /// Paints every sample whose centre lies inside `[minX,maxX]×[minY,maxY]`
    /// (scene units) and for which `color` answers a colour. Only the box is
    /// visited, so small shapes stay cheap.
    public mutating func shade(minX: Float, minY: Float, maxX: Float, maxY: Float,
                               alpha: Float = 1, _ color: (Point) -> WorldColor?) {
        let f = samplesPerUnit
        let x0 = max(0, Int((minX * f).rounded(.down))), x1 = min(sampleWidth - 1, Int((maxX * f).rounded(.up)))
        let y0 = max(0, Int((minY * f).rounded(.down))), y1 = min(sampleHeight - 1, Int((maxY * f).rounded(.up)))
        guard x0 <= x1, y0 <= y1 else { return }
        for sy in y0...y1 {
            let py = (Float(sy) + 0.5) / f
            for sx in x0...x1 {
                let p = Point((Float(sx) + 0.5) / f, py)
                guard let c = color(p) else { continue }
                let i = (sy * sampleWidth + sx) * 3
                samples[i] += (c.r - samples[i]) * alpha
                samples[i + 1] += (c.g - samples[i + 1]) * alpha
                samples[i + 2] += (c.b - samples[i + 2]) * alpha
            }
        }
    }

    /// Whole-canvas shading (gradients, skies).
    public mutating func shadeAll(_ color: (Point) -> WorldColor?) {
        shade(minX: 0, minY: 0, maxX: sceneWidth, maxY: sceneHeight, color)
    }

    public mutating func fill(_ shape: Shape, _ color: WorldColor, alpha: Float = 1,
                              clip: Shape? = nil) {
        let b = shape.bounds
        shade(minX: b.minX, minY: b.minY, maxX: b.maxX, maxY: b.maxY, alpha: alpha) { p in
            guard shape.contains(p), clip?.contains(p) ?? true else { return nil }
            return color
        }
    }

    /// Box-filters the samples down to pixels and quantizes once.
    public func image() -> RGBImage {
        var floats = [Float](repeating: 0, count: width * height * 3)
        let norm = 1 / Float(factor * factor)
        for y in 0..<height {
            for x in 0..<width {
                var acc: (Float, Float, Float) = (0, 0, 0)
                for dy in 0..<factor {
                    let row = (y * factor + dy) * sampleWidth
                    for dx in 0..<factor {
                        let i = (row + x * factor + dx) * 3
                        acc.0 += samples[i]; acc.1 += samples[i + 1]; acc.2 += samples[i + 2]
                    }
                }
                let o = (y * width + x) * 3
                floats[o] = acc.0 * norm; floats[o + 1] = acc.1 * norm; floats[o + 2] = acc.2 * norm
            }
        }
        // Dimensions always match, so this cannot throw.
        return try! RGBImage(width: width, height: height, floats: floats)
    }
}
