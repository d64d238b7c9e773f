import Foundation
import NestDiffusion

/// What one server accepts: the library's generation limits (tighter by default than
/// the command line's, since anyone who reaches the port can send a request) and the
/// HTTP-side bounds that keep the server up.
public struct ServerLimits: Sendable {
    public var generation: GenerationLimits
    /// Largest request body in bytes (subject photos travel base64 inside it).
    public var maxBodyBytes = 32 << 20
    /// Requests waiting behind the running one; past it a request gets 503.
    public var maxQueuedJobs = 16
    /// A job running longer is cancelled between two steps.
    public var jobTimeout: TimeInterval = 600
    /// Seconds a connection may sit idle or take to send its request.
    public var idleTimeout: TimeInterval = 60
    public var maxSubjects = 4
    public var maxPhotosPerSubject = 8
    /// Pixels of one subject photo (they are resized to the image encoder's size anyway).
    public var maxPhotoPixels = 4096 * 4096

    public init() {
        var generation = GenerationLimits()
        generation.maxSteps = 150
        generation.maxCount = 64
        generation.maxBatchSize = 8
        generation.maxSide = 2048
        generation.maxPixels = 1024 * 1024
        generation.maxPromptCharacters = 4000
        self.generation = generation
    }
}
