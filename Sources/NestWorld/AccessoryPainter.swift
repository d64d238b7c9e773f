/// Draws the accessory on a subject, attached to its anatomy.
enum AccessoryPainter {
    static let red = WorldColor(0.85, 0.1, 0.12)
    static let blue = WorldColor(0.15, 0.32, 0.9)
    static let green = WorldColor(0.12, 0.72, 0.25)

    static func paint(_ accessory: Accessory, on a: Anatomy, in f: SubjectFrame, canvas: inout Canvas) {
        let r = a.headHalfWidth
        switch accessory {
        case .none: break
        case .redHat:
            canvas.fill(f.box(a.headU, a.headTop, r * 0.95, 0.025, radius: 0.01), red)
            canvas.fill(f.box(a.headU, a.headTop + 0.11, r * 0.6, 0.1, radius: 0.015), red)
            canvas.fill(f.box(a.headU, a.headTop + 0.04, r * 0.6, 0.02), red.scaled(0.5))
        case .blueScarf:
            let w = a.neckHalfWidth
            canvas.fill(f.capsule(a.neckU - w, a.neckV, a.neckU + w, a.neckV, 0.045), blue)
            canvas.fill(f.capsule(a.neckU - w * 0.5, a.neckV, a.neckU - w * 0.7, a.neckV - 0.16, 0.035), blue)
        case .greenBow:
            let u = a.headU + r * 0.55, v = a.headTop - 0.01
            canvas.fill(f.triangle((u, v), (u - 0.1, v + 0.07), (u - 0.1, v - 0.05)), green)
            canvas.fill(f.triangle((u, v), (u + 0.1, v + 0.07), (u + 0.1, v - 0.05)), green)
            canvas.fill(f.circle(u, v, 0.03), green.scaled(0.7))
        }
    }
}
