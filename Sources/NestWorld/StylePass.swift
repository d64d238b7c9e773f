/// Whole-image looks applied to the supersampled canvas (so their edges are
/// anti-aliased by the same box filter as the shapes).
enum StylePass {
    static func apply(_ style: Style, to canvas: inout Canvas) {
        switch style {
        case .flat: break
        case .sketch: sketch(&canvas)
        case .night: night(&canvas)
        }
    }

    /// Paper-white, desaturated, ink on luminance edges, diagonal hatching in
    /// the darker tones and cross-hatching in the darkest.
    static func sketch(_ c: inout Canvas) {
        let w = c.sampleWidth, h = c.sampleHeight, f = c.factor
        var lum = [Float](repeating: 0, count: w * h)
        for i in 0..<(w * h) { lum[i] = 0.299 * c.samples[3 * i] + 0.587 * c.samples[3 * i + 1] + 0.114 * c.samples[3 * i + 2] }
        // Edge probe half a scene unit away, hatching every 3 units: the same
        // strokes at every image side (exactly the 64-pixel ones at 1 pixel per unit).
        let s = c.pixelsPerUnit
        func units(_ samples: Int) -> Int { max(1, Int((Float(samples) * s).rounded())) }
        let d = units(max(1, f / 2))
        let period = units(3 * f), width = units(max(1, f * 2 / 3))
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x
                let gx = lum[y * w + min(w - 1, x + d)] - lum[y * w + max(0, x - d)]
                let gy = lum[min(h - 1, y + d) * w + x] - lum[max(0, y - d) * w + x]
                let edge = min(1, (abs(gx) + abs(gy)) * 4)
                var tone = 0.55 + 0.45 * lum[i]
                if lum[i] < 0.55 && (x + y) % period < width { tone *= 0.55 }
                if lum[i] < 0.3 && (x - y + 4 * h) % period < width { tone *= 0.55 }
                tone *= 1 - 0.85 * edge
                let o = 3 * i
                // A little of the original colour survives, like a tinted pencil.
                c.samples[o] = tone * 0.85 + c.samples[o] * 0.15
                c.samples[o + 1] = tone * 0.85 + c.samples[o + 1] * 0.15
                c.samples[o + 2] = tone * 0.82 + c.samples[o + 2] * 0.15
            }
        }
    }

    /// Dark and blue: scaled-down, desaturated toward moonlight.
    static func night(_ c: inout Canvas) {
        var i = 0
        while i < c.samples.count {
            let l = 0.299 * c.samples[i] + 0.587 * c.samples[i + 1] + 0.114 * c.samples[i + 2]
            c.samples[i] = (0.5 * c.samples[i] + 0.5 * l) * 0.4
            c.samples[i + 1] = (0.5 * c.samples[i + 1] + 0.5 * l) * 0.46 + 0.01
            c.samples[i + 2] = (0.5 * c.samples[i + 2] + 0.5 * l) * 0.6 + 0.06
            i += 3
        }
    }
}
