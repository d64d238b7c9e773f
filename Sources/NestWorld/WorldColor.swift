/// Linear-ish RGB in 0...1; the world is painted in these and quantized once.
public struct WorldColor: Codable, Equatable, Sendable {
    public var r: Float, g: Float, b: Float

    public init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }

    /// Hue in degrees, saturation and lightness in 0...1 (the usual HSL cone).
    public init(hue: Float, saturation: Float, lightness: Float) {
        let c = (1 - abs(2 * lightness - 1)) * saturation
        let h = (hue.truncatingRemainder(dividingBy: 360) + 360).truncatingRemainder(dividingBy: 360) / 60
        let x = c * (1 - abs(h.truncatingRemainder(dividingBy: 2) - 1))
        let (r1, g1, b1): (Float, Float, Float)
        switch Int(h) {
        case 0: (r1, g1, b1) = (c, x, 0)
        case 1: (r1, g1, b1) = (x, c, 0)
        case 2: (r1, g1, b1) = (0, c, x)
        case 3: (r1, g1, b1) = (0, x, c)
        case 4: (r1, g1, b1) = (x, 0, c)
        default: (r1, g1, b1) = (c, 0, x)
        }
        let m = lightness - c / 2
        self.init(r1 + m, g1 + m, b1 + m)
    }

    public func mixed(with other: WorldColor, _ t: Float) -> WorldColor {
        WorldColor(r + (other.r - r) * t, g + (other.g - g) * t, b + (other.b - b) * t)
    }

    public func scaled(_ s: Float) -> WorldColor { WorldColor(r * s, g * s, b * s) }

    public var luminance: Float { 0.299 * r + 0.587 * g + 0.114 * b }

    public static let white = WorldColor(1, 1, 1)
    public static let black = WorldColor(0, 0, 0)
    public static let ink = WorldColor(0.08, 0.07, 0.1)
}
