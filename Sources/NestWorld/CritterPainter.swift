/// Paints a critter: a four-legged animal facing right, with belly, ears or
/// horns, eyes, nose and tail, all proportioned by its identity.
enum CritterPainter {
    static func paint(_ id: Identity, in f: SubjectFrame, on canvas: inout Canvas) -> Anatomy {
        let body = id.bodyColor, dark = body.scaled(0.72)
        let bw = id.bodyWidth, bh = id.bodyHeight, hs = id.headSize
        let bodyU: Float = -0.05, bodyV: Float = 0.34, rx = 0.34 * bw, ry = 0.2 * bh

        // Tail behind everything.
        let tu = bodyU - rx * 0.9, tv = bodyV + ry * 0.3
        switch id.limbStyle {
        case 0: canvas.fill(f.capsule(tu, tv, tu - 0.2, tv + 0.3, 0.04), dark)
        case 1:
            canvas.fill(f.capsule(tu, tv, tu - 0.18, tv + 0.12, 0.04), dark)
            canvas.fill(f.capsule(tu - 0.18, tv + 0.12, tu - 0.14, tv + 0.3, 0.04), dark)
            canvas.fill(f.capsule(tu - 0.14, tv + 0.3, tu - 0.04, tv + 0.26, 0.04), dark)
        default: canvas.fill(f.ellipse(tu - 0.12, tv + 0.16, 0.1, 0.2), dark)
        }
        // Far legs darker, near legs body-coloured.
        for (i, x) in [-0.26, 0.1, -0.17, 0.2].enumerated() {
            let u = bodyU + Float(x) * bw
            canvas.fill(f.capsule(u, bodyV - ry * 0.5, u, 0.04, 0.05), i < 2 ? dark : body.scaled(0.9))
        }
        let bodyShape = f.ellipse(bodyU, bodyV, rx, ry)
        canvas.fill(bodyShape, body)
        paintMarkings(id, body: (bodyU, bodyV, rx, ry), in: f, clip: bodyShape, on: &canvas)
        canvas.fill(f.ellipse(bodyU + 0.05, bodyV - ry * 0.45, rx * 0.6, ry * 0.45),
                    id.accentColor.mixed(with: .white, 0.3), clip: bodyShape)

        // Head sits on the front shoulder.
        let hr = 0.19 * hs, hu = bodyU + rx * 0.8, hv = bodyV + ry + hr * 0.55
        let len = id.appendageLength
        for s: Float in [-1, 1] {
            let bu = hu + s * 0.55 * hr, bv = hv + 0.6 * hr
            switch id.appendageStyle {
            case 0:
                canvas.fill(f.triangle((bu - 0.32 * hr, bv - 0.2 * hr), (bu + 0.32 * hr, bv - 0.2 * hr),
                                       (bu + s * 0.15 * hr, bv + 0.8 * hr * len)), dark)
            case 1:
                canvas.fill(f.circle(bu, bv + 0.2 * hr * len, 0.36 * hr * len), dark)
                canvas.fill(f.circle(bu, bv + 0.2 * hr * len, 0.2 * hr * len), id.accentColor)
            default:
                canvas.fill(f.capsule(bu, bv - 0.1 * hr, bu + s * 0.35 * hr, bv + 0.85 * hr * len, 0.1 * hr),
                            id.accentColor.mixed(with: WorldColor(0.95, 0.9, 0.75), 0.6))
            }
        }
        canvas.fill(f.circle(hu, hv, hr), body)
        // Eyes: sclera, pupil looking forward, highlight.
        let er = 0.2 * hr * id.eyeSize
        for s: Float in [-1, 1] {
            let eu = hu + s * id.eyeSpacing * hr + 0.05 * hr, ev = hv + 0.08 * hr
            canvas.fill(f.circle(eu, ev, er), .white)
            canvas.fill(f.circle(eu + er * 0.25, ev, er * 0.62), .ink)
            canvas.fill(f.circle(eu + er * 0.35, ev + er * 0.3, er * 0.2), .white)
        }
        canvas.fill(f.ellipse(hu + 0.05 * hr, hv - 0.35 * hr, 0.13 * hr, 0.09 * hr), .ink)
        return Anatomy(headU: hu, headV: hv, headHalfWidth: hr, headTop: hv + hr,
                       neckU: hu - 0.1 * hr, neckV: hv - 0.85 * hr, neckHalfWidth: hr * 0.75)
    }

    static func paintMarkings(_ id: Identity, body: (Float, Float, Float, Float), in f: SubjectFrame,
                              clip: Shape, on canvas: inout Canvas) {
        let (cu, cv, rx, ry) = body
        var rng = WorldRandom(seed: id.markingSeed)
        let color = id.markingColor
        switch id.marking {
        case .none: break
        case .spots:
            for _ in 0..<6 {
                canvas.fill(f.circle(cu + rng.uniform(-0.8, 0.8) * rx, cv + rng.uniform(-0.5, 0.8) * ry,
                                     rng.uniform(0.035, 0.06)), color, clip: clip)
            }
        case .stripes:
            let phase = rng.uniform(-0.1, 0.1)
            for k in -2...2 {
                let u = cu + phase + Float(k) * rx * 0.38
                canvas.fill(f.capsule(u, cv + ry, u - 0.05, cv - ry * 0.2, 0.028), color, clip: clip)
            }
        case .patch:
            canvas.fill(f.ellipse(cu + rng.uniform(-0.5, 0.3) * rx, cv + rng.uniform(0, 0.5) * ry,
                                  rx * rng.uniform(0.35, 0.5), ry * rng.uniform(0.5, 0.8)), color, clip: clip)
        }
    }
}
