#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Linear warmup to the base rate, then constant or cosine decay to `minimum`.
public struct LearningRateSchedule: Sendable, Codable, Equatable {
    public enum Decay: String, Sendable, Codable { case constant, cosine }

    public var base: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var decay: Decay
    public var minimum: Float

    public init(base: Float, warmupSteps: Int = 0, totalSteps: Int = 0, decay: Decay = .constant, minimum: Float = 0) {
        self.base = base; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
        self.decay = decay; self.minimum = minimum
    }

    /// The rate for step `step` (0-based: the rate used by the first update is `rate(at: 0)`).
    public func rate(at step: Int) -> Float {
        if warmupSteps > 0 && step < warmupSteps {
            return base * Float(step + 1) / Float(warmupSteps)
        }
        switch decay {
        case .constant:
            return base
        case .cosine:
            let span = max(1, totalSteps - warmupSteps)
            let progress = min(1, Float(step - warmupSteps) / Float(span))
            return minimum + (base - minimum) * 0.5 * (1 + cosf(Float.pi * progress))
        }
    }
}
