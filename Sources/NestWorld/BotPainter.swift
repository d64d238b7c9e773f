/// Paints a bot: a boxy robot with rounded corners, chest panel, head with
/// a visor and glowing eyes, antennae, and wheels, legs or treads.
enum BotPainter {
    static func paint(_ id: Identity, in f: SubjectFrame, on canvas: inout Canvas) -> Anatomy {
        let body = id.bodyColor, metal = WorldColor(0.32, 0.33, 0.36), glow = id.accentColor
        let bw = id.bodyWidth, bh = id.bodyHeight, hs = id.headSize

        // Undercarriage first: the body overlaps its top.
        switch id.limbStyle {
        case 0:
            for s: Float in [-1, 1] {
                canvas.fill(f.circle(s * 0.19 * bw, 0.1, 0.1), metal)
                canvas.fill(f.circle(s * 0.19 * bw, 0.1, 0.04), glow)
            }
        case 1:
            for s: Float in [-1, 1] {
                canvas.fill(f.capsule(s * 0.14 * bw, 0.22, s * 0.14 * bw, 0.06, 0.045), metal)
                canvas.fill(f.box(s * 0.16 * bw, 0.03, 0.08, 0.03, radius: 0.02), metal.scaled(0.7))
            }
        default:
            canvas.fill(f.box(0, 0.09, 0.34 * bw, 0.09, radius: 0.08), metal.scaled(0.7))
            for k in -2...2 { canvas.fill(f.circle(Float(k) * 0.13 * bw, 0.09, 0.04), metal.scaled(1.4)) }
        }
        let bodyV = 0.18 + 0.2 * bh, hw = 0.3 * bw, hh = 0.2 * bh
        let bodyShape = f.box(0, bodyV, hw, hh, radius: 0.07)
        canvas.fill(bodyShape, body)
        paintMarkings(id, body: (bodyV, hw, hh), in: f, clip: bodyShape, on: &canvas)
        canvas.fill(f.box(0, bodyV, 0.12, 0.07, radius: 0.02), metal.scaled(0.8))
        canvas.fill(f.circle(-0.05, bodyV, 0.03), glow)
        canvas.fill(f.circle(0.05, bodyV, 0.03), WorldColor(0.9, 0.85, 0.3))

        let top = bodyV + hh
        canvas.fill(f.box(0, top + 0.03, 0.05, 0.04), metal)
        let hhw = 0.22 * hs, hhh = 0.15 * hs, hv = top + 0.05 + hhh
        // Antennae rise from the head's top edge.
        let len = 0.22 * id.appendageLength, at = hv + hhh
        switch id.appendageStyle {
        case 0:
            canvas.fill(f.capsule(0, at, 0, at + len, 0.015), metal)
            canvas.fill(f.circle(0, at + len, 0.04), glow)
        case 1:
            for s: Float in [-1, 1] {
                canvas.fill(f.capsule(s * 0.1 * hs, at, s * (0.1 * hs + 0.08), at + len, 0.015), metal)
                canvas.fill(f.circle(s * (0.1 * hs + 0.08), at + len, 0.03), glow)
            }
        default:
            let pts: [(Float, Float)] = [(0, at), (0.05, at + len * 0.35), (-0.04, at + len * 0.65), (0.03, at + len)]
            for k in 0..<3 { canvas.fill(f.capsule(pts[k].0, pts[k].1, pts[k + 1].0, pts[k + 1].1, 0.015), metal) }
            canvas.fill(f.circle(0.03, at + len, 0.035), glow)
        }
        canvas.fill(f.box(0, hv, hhw, hhh, radius: 0.05), body.mixed(with: .white, 0.2))
        canvas.fill(f.box(0, hv + 0.02 * hs, hhw * 0.82, hhh * 0.5, radius: 0.04), WorldColor(0.1, 0.12, 0.16))
        let er = 0.055 * hs * id.eyeSize
        for s: Float in [-1, 1] {
            canvas.fill(f.circle(s * id.eyeSpacing * hhw, hv + 0.02 * hs, er), glow)
            canvas.fill(f.circle(s * id.eyeSpacing * hhw + er * 0.3, hv + 0.02 * hs + er * 0.3, er * 0.3), .white)
        }
        canvas.fill(f.box(0, hv - 0.1 * hs, 0.08 * hs, 0.012), metal)
        return Anatomy(headU: 0, headV: hv, headHalfWidth: hhw, headTop: hv + hhh,
                       neckU: 0, neckV: top + 0.03, neckHalfWidth: 0.1)
    }

    static func paintMarkings(_ id: Identity, body: (Float, Float, Float), in f: SubjectFrame,
                              clip: Shape, on canvas: inout Canvas) {
        let (cv, hw, hh) = body
        var rng = WorldRandom(seed: id.markingSeed)
        let color = id.markingColor
        switch id.marking {
        case .none: break
        case .spots:  // rivets
            for s: Float in [-1, 1] {
                for t: Float in [-1, 1] { canvas.fill(f.circle(s * hw * 0.78, cv + t * hh * 0.75, 0.025), color) }
            }
            canvas.fill(f.circle(rng.uniform(-0.5, 0.5) * hw, cv + hh * 0.7, 0.03), color, clip: clip)
        case .stripes:
            let gap = rng.uniform(0.3, 0.45)
            for k in [-1, 1] {
                canvas.fill(f.box(0, cv + Float(k) * hh * gap * 1.6, hw, 0.025), color, clip: clip)
            }
        case .patch:
            let side: Float = rng.int(2) == 0 ? -1 : 1
            canvas.fill(f.box(side * hw * 0.6, cv - hh * 0.3, hw * 0.3, hh * 0.5, radius: 0.03), color, clip: clip)
        }
    }
}
