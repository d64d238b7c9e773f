/// Maps a subject's own coordinates (u to the right, v up, about one unit
/// tall, feet at v = 0) onto scene pixels, so painters are written once and
/// placed anywhere at any size.
struct SubjectFrame {
    var footX: Float, groundY: Float, scale: Float

    func p(_ u: Float, _ v: Float) -> Point { Point(footX + u * scale, groundY - v * scale) }
    func len(_ d: Float) -> Float { d * scale }

    func ellipse(_ u: Float, _ v: Float, _ rx: Float, _ ry: Float) -> Shape {
        .ellipse(center: p(u, v), rx: len(rx), ry: len(ry))
    }
    func circle(_ u: Float, _ v: Float, _ r: Float) -> Shape { ellipse(u, v, r, r) }
    func box(_ u: Float, _ v: Float, _ hw: Float, _ hh: Float, radius: Float = 0) -> Shape {
        .roundedRect(center: p(u, v), halfWidth: len(hw), halfHeight: len(hh), radius: len(radius))
    }
    func capsule(_ u0: Float, _ v0: Float, _ u1: Float, _ v1: Float, _ r: Float) -> Shape {
        .capsule(from: p(u0, v0), to: p(u1, v1), radius: len(r))
    }
    func triangle(_ a: (Float, Float), _ b: (Float, Float), _ c: (Float, Float)) -> Shape {
        .triangle(p(a.0, a.1), p(b.0, b.1), p(c.0, c.1))
    }
}

/// Where accessories attach, in subject coordinates.
struct Anatomy {
    var headU: Float, headV: Float
    /// Half the head's width and the v of its top.
    var headHalfWidth: Float, headTop: Float
    var neckU: Float, neckV: Float, neckHalfWidth: Float
}
