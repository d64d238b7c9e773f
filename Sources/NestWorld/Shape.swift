/// The few primitives the world is drawn with, as inside-tests plus bounds.
public enum Shape: Sendable {
    case ellipse(center: Point, rx: Float, ry: Float)
    /// Axis-aligned box with rounded corners (radius clamped to the half-sizes).
    case roundedRect(center: Point, halfWidth: Float, halfHeight: Float, radius: Float)
    /// A thick segment with round caps: limbs, antennae, tails, hatching.
    case capsule(from: Point, to: Point, radius: Float)
    case triangle(Point, Point, Point)

    public static func circle(_ c: Point, _ r: Float) -> Shape { .ellipse(center: c, rx: r, ry: r) }
    public static func rect(minX: Float, minY: Float, maxX: Float, maxY: Float) -> Shape {
        .roundedRect(center: Point((minX + maxX) / 2, (minY + maxY) / 2),
                     halfWidth: (maxX - minX) / 2, halfHeight: (maxY - minY) / 2, radius: 0)
    }

    public var bounds: (minX: Float, minY: Float, maxX: Float, maxY: Float) {
        switch self {
        case let .ellipse(c, rx, ry): return (c.x - rx, c.y - ry, c.x + rx, c.y + ry)
        case let .roundedRect(c, hw, hh, _): return (c.x - hw, c.y - hh, c.x + hw, c.y + hh)
        case let .capsule(a, b, r):
            return (min(a.x, b.x) - r, min(a.y, b.y) - r, max(a.x, b.x) + r, max(a.y, b.y) + r)
        case let .triangle(a, b, c):
            return (min(a.x, b.x, c.x), min(a.y, b.y, c.y), max(a.x, b.x, c.x), max(a.y, b.y, c.y))
        }
    }

    public func contains(_ p: Point) -> Bool {
        switch self {
        case let .ellipse(c, rx, ry):
            let dx = (p.x - c.x) / rx, dy = (p.y - c.y) / ry
            return dx * dx + dy * dy <= 1
        case let .roundedRect(c, hw, hh, radius):
            let r = min(radius, hw, hh)
            let qx = max(abs(p.x - c.x) - (hw - r), 0), qy = max(abs(p.y - c.y) - (hh - r), 0)
            return abs(p.x - c.x) <= hw && abs(p.y - c.y) <= hh && qx * qx + qy * qy <= r * r
        case let .capsule(a, b, r):
            let vx = b.x - a.x, vy = b.y - a.y
            let len2 = vx * vx + vy * vy
            let t = len2 > 0 ? max(0, min(1, ((p.x - a.x) * vx + (p.y - a.y) * vy) / len2)) : 0
            let dx = p.x - (a.x + t * vx), dy = p.y - (a.y + t * vy)
            return dx * dx + dy * dy <= r * r
        case let .triangle(a, b, c):
            func side(_ u: Point, _ v: Point) -> Float { (v.x - u.x) * (p.y - u.y) - (v.y - u.y) * (p.x - u.x) }
            let s1 = side(a, b), s2 = side(b, c), s3 = side(c, a)
            return (s1 >= 0 && s2 >= 0 && s3 >= 0) || (s1 <= 0 && s2 <= 0 && s3 <= 0)
        }
    }
}
