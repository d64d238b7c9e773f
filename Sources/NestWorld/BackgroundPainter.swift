import Foundation

/// Paints the six backdrops: a vertical sky gradient, a ground band and a
/// few seeded props, so each place reads at 64×64 yet no two scenes of the
/// same place are pixel-identical.
enum BackgroundPainter {
    static let horizon: Float = 40

    static func paint(_ background: Background, seed: UInt64, on canvas: inout Canvas) {
        var rng = WorldRandom(seed: seed, stream: "background")
        let w = canvas.sceneWidth, h = canvas.sceneHeight
        func sky(_ top: WorldColor, _ bottom: WorldColor) {
            canvas.shadeAll { p in top.mixed(with: bottom, min(1, p.y / horizon)) }
        }
        func ground(_ near: WorldColor, _ far: WorldColor, from y: Float = horizon) {
            canvas.shade(minX: 0, minY: y, maxX: w, maxY: h) { p in
                p.y >= y ? far.mixed(with: near, (p.y - y) / (h - y)) : nil
            }
        }
        switch background {
        case .beach:
            sky(WorldColor(0.35, 0.62, 0.95), WorldColor(0.78, 0.9, 1))
            canvas.fill(.circle(Point(rng.uniform(8, 56), rng.uniform(6, 14)), 4.5), WorldColor(1, 0.93, 0.5))
            ground(WorldColor(0.1, 0.45, 0.7), WorldColor(0.2, 0.55, 0.8), from: horizon - 6)
            canvas.fill(.rect(minX: 0, minY: horizon - 1.2, maxX: w, maxY: horizon - 0.4), WorldColor(0.9, 0.97, 1))
            ground(WorldColor(0.93, 0.82, 0.55), WorldColor(0.96, 0.88, 0.66))
        case .forest:
            sky(WorldColor(0.62, 0.8, 0.7), WorldColor(0.85, 0.93, 0.8))
            for _ in 0..<7 {
                let x = rng.uniform(0, w), top = rng.uniform(6, 20), half = rng.uniform(5, 9)
                let green = WorldColor(hue: rng.uniform(95, 150), saturation: 0.45, lightness: rng.uniform(0.2, 0.35))
                canvas.fill(.rect(minX: x - 1.2, minY: horizon - 8, maxX: x + 1.2, maxY: horizon + 1), WorldColor(0.35, 0.22, 0.12))
                canvas.fill(.triangle(Point(x, top), Point(x - half, horizon - 4), Point(x + half, horizon - 4)), green)
            }
            ground(WorldColor(0.25, 0.5, 0.18), WorldColor(0.35, 0.6, 0.25))
        case .city:
            sky(WorldColor(0.55, 0.5, 0.75), WorldColor(0.95, 0.72, 0.6))
            var x: Float = -2
            while x < w {
                let bw = rng.uniform(6, 11), top = rng.uniform(8, 26)
                let shade = WorldColor(hue: 230, saturation: 0.12, lightness: rng.uniform(0.25, 0.45))
                canvas.fill(.rect(minX: x, minY: top, maxX: x + bw, maxY: horizon + 2), shade)
                var wy = top + 2
                while wy < horizon - 2 {
                    var wx = x + 1.5
                    while wx < x + bw - 2 {
                        if rng.int(3) != 0 { canvas.fill(.rect(minX: wx, minY: wy, maxX: wx + 1.3, maxY: wy + 1.6), WorldColor(1, 0.9, 0.55)) }
                        wx += 3
                    }
                    wy += 3.5
                }
                x += bw + rng.uniform(0.5, 2)
            }
            ground(WorldColor(0.3, 0.3, 0.33), WorldColor(0.45, 0.45, 0.48))
            canvas.fill(.rect(minX: 0, minY: 58, maxX: w, maxY: 58.8), WorldColor(0.9, 0.85, 0.4))
        case .snow:
            sky(WorldColor(0.7, 0.8, 0.92), WorldColor(0.93, 0.95, 1))
            for _ in 0..<3 {
                let x = rng.uniform(0, w), peak = rng.uniform(12, 24), half = rng.uniform(12, 20)
                canvas.fill(.triangle(Point(x, peak), Point(x - half, horizon), Point(x + half, horizon)), WorldColor(0.6, 0.66, 0.78))
                canvas.fill(.triangle(Point(x, peak), Point(x - half * 0.3, peak + 5), Point(x + half * 0.3, peak + 5)), .white)
            }
            ground(WorldColor(0.97, 0.98, 1), WorldColor(0.86, 0.9, 0.97))
            for _ in 0..<25 { canvas.fill(.circle(Point(rng.uniform(0, w), rng.uniform(0, h)), 0.55), .white) }
        case .desert:
            sky(WorldColor(0.95, 0.65, 0.35), WorldColor(1, 0.88, 0.6))
            canvas.fill(.circle(Point(rng.uniform(8, 56), rng.uniform(8, 16)), 5), WorldColor(1, 0.98, 0.8))
            let phase = rng.uniform(0, 6.28)
            canvas.shade(minX: 0, minY: horizon - 6, maxX: w, maxY: h) { p in
                p.y > horizon - 3 + 3 * Float(sin(Double(p.x / 9 + phase))) ? WorldColor(0.88, 0.68, 0.4) : nil
            }
            ground(WorldColor(0.92, 0.74, 0.45), WorldColor(0.86, 0.66, 0.4), from: horizon + 3)
            let cx = rng.pick([Float(6), 58])
            let cactus = WorldColor(0.25, 0.55, 0.3)
            canvas.fill(.capsule(from: Point(cx, 30), to: Point(cx, 46), radius: 1.6), cactus)
            canvas.fill(.capsule(from: Point(cx - 4, 34), to: Point(cx - 4, 39), radius: 1.1), cactus)
            canvas.fill(.capsule(from: Point(cx - 4, 39), to: Point(cx, 39), radius: 1.1), cactus)
        case .nightSky:
            sky(WorldColor(0.03, 0.04, 0.15), WorldColor(0.15, 0.18, 0.4))
            for _ in 0..<30 {
                canvas.fill(.circle(Point(rng.uniform(0, w), rng.uniform(0, horizon - 4)), rng.uniform(0.3, 0.6)), WorldColor(1, 1, 0.85))
            }
            let m = Point(rng.uniform(10, 54), rng.uniform(7, 14))
            canvas.fill(.circle(m, 4), WorldColor(0.98, 0.96, 0.82))
            canvas.fill(.circle(Point(m.x + 1.8, m.y - 1), 3.4), WorldColor(0.05, 0.06, 0.2))
            ground(WorldColor(0.08, 0.12, 0.12), WorldColor(0.12, 0.2, 0.2))
        }
    }
}
