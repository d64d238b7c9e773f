import Foundation

/// Sane ranges for the numbers a model or adapter config holds. They sit far
/// above every released Stable Diffusion / CLIP size (SDXL's widest layer is
/// 5120, bigG's vocabulary 49408), yet keep every tensor shape a config can
/// imply small enough that its element count cannot overflow, so an absurd
/// value is a one-line error instead of a crash or a runaway allocation.
public enum ConfigBounds {
    /// Channels, hidden sizes, inner widths, projection widths.
    public static let width = 1...65_536
    /// Layers, blocks, transformer depths.
    public static let layers = 1...512
    public static let heads = 1...1024
    public static let vocabulary = 1...1_048_576
    /// Sequence positions, learned queries, image sizes in pixels.
    public static let positions = 1...65_536
    /// Convolution kernels and small multipliers (feed-forward widths, patch counts per side are checked as positions).
    public static let kernel = 1...31

    /// Throws "`key` is `value`, outside `range`" when the value is out of range.
    public static func check(_ key: String, _ value: Int, in range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ModelConfigError("'\(key)' is \(value), outside \(range.lowerBound)...\(range.upperBound)")
        }
    }

    /// A float setting must be finite (and positive when `positive`).
    public static func check(_ key: String, _ value: Double, positive: Bool = false) throws {
        guard value.isFinite else { throw ModelConfigError("'\(key)' is \(value), not a finite number") }
        if positive && !(value > 0) { throw ModelConfigError("'\(key)' is \(value); it must be positive") }
    }
}
