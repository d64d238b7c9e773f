import Foundation
import NestDiffusion
import NestPersonalization

/// The request is refused because too many are already waiting (HTTP 503).
public struct QueueFull: Error, CustomStringConvertible {
    public let waiting: Int
    public var description: String { "the server is busy: \(waiting) requests are already waiting; try again later" }
}

/// A job ran past the server's time limit and was cancelled between two steps.
public struct JobTimedOut: Error, CustomStringConvertible {
    public let seconds: TimeInterval
    public var description: String { "the job ran past the server's \(Int(seconds)) s limit and was cancelled" }
}

/// What a finished (or interrupted) job produced.
public struct JobOutcome {
    public var images: [GeneratedImage]
    /// Interrupted between steps: `images` holds the batches finished before.
    public var interrupted: Bool
    /// Where the first batch's attention maps were written, when asked for.
    public var attentionFolder: URL?
}

/// Where the queue stands, as `GET /sdapi/v1/progress` reports it.
public struct QueueProgress: Sendable {
    /// Jobs running or waiting.
    public var jobCount = 0
    public var running = false
    public var step = 0
    public var totalSteps = 0
    public var startedAt: Date?
    /// Jobs started since the server started.
    public var jobNumber = 0
    public var interrupted = false

    public var fraction: Double { totalSteps == 0 ? 0 : Double(step) / Double(totalSteps) }
    /// Seconds left, from the pace so far.
    public var eta: Double {
        guard let startedAt, step > 0 else { return 0 }
        let elapsed = Date().timeIntervalSince(startedAt)
        return elapsed / Double(step) * Double(totalSteps - step)
    }
}

/// Runs generation jobs one at a time on one thread (the engine is not re-entrant): a
/// request waits its turn in a bounded queue; `interrupt` cancels the running job at its
/// next step. The generator is touched only by the worker thread.
public final class GenerationQueue: @unchecked Sendable {
    final class Job {
        let request: GenerationRequest
        let attentionFolder: URL?
        let continuation: CheckedContinuation<JobOutcome, Error>
        var cancelled = false
        init(request: GenerationRequest, attentionFolder: URL?, continuation: CheckedContinuation<JobOutcome, Error>) {
            self.request = request; self.attentionFolder = attentionFolder; self.continuation = continuation
        }
    }

    private let generator: Generator
    private let limits: ServerLimits
    private let condition = NSCondition()
    private var waiting: [Job] = []
    private var running: Job?
    private var state = QueueProgress()

    public init(generator: Generator, limits: ServerLimits) {
        self.generator = generator
        self.limits = limits
        let worker = Thread { [unowned self] in self.work() }
        worker.stackSize = 16 << 20
        worker.name = "nest-generation"
        worker.start()
    }

    /// Queues a checked request and waits for its images. `attentionFolder`: where the
    /// first batch's attention maps go (the request must record them).
    public func run(_ request: GenerationRequest, attentionFolder: URL? = nil) async throws -> JobOutcome {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            defer { condition.unlock() }
            // With the worker idle, the first waiting job starts at once and does not count.
            guard waiting.count < limits.maxQueuedJobs + (running == nil ? 1 : 0) else {
                continuation.resume(throwing: QueueFull(waiting: waiting.count))
                return
            }
            waiting.append(Job(request: request, attentionFolder: attentionFolder, continuation: continuation))
            state.jobCount = waiting.count + (running == nil ? 0 : 1)
            condition.signal()
        }
    }

    /// Cancels the running job at its next step; returns false when none runs.
    @discardableResult
    public func interrupt() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let running else { return false }
        running.cancelled = true
        state.interrupted = true
        return true
    }

    public var progress: QueueProgress {
        condition.lock()
        defer { condition.unlock() }
        return state
    }

    private func work() {
        while true {
            condition.lock()
            while waiting.isEmpty { condition.wait() }
            let job = waiting.removeFirst()
            running = job
            let config = job.request.generation
            state = QueueProgress(jobCount: waiting.count + 1, running: true, step: 0,
                                  totalSteps: config.denoisingSteps * config.batches.count, startedAt: Date(),
                                  jobNumber: state.jobNumber + 1, interrupted: false)
            condition.unlock()

            let result = Result { try execute(job) }

            condition.lock()
            running = nil
            state.running = false
            state.jobCount = waiting.count
            condition.unlock()
            job.continuation.resume(with: result)
        }
    }

    /// One job on the worker thread: images batch by batch, the attention maps after the
    /// first image. An interrupt keeps the images already finished.
    private func execute(_ job: Job) throws -> JobOutcome {
        var outcome = JobOutcome(images: [], interrupted: false, attentionFolder: nil)
        let batches = job.request.generation.batches.count
        let deadline = Date().addingTimeInterval(limits.jobTimeout)
        var timedOut = false
        do {
            try generator.generate(job.request, progress: { [self] batch, p in
                condition.lock()
                defer { condition.unlock() }
                // Image-to-image runs fewer steps than asked for: count the ones that run.
                state.step = batch * p.stepCount + p.step
                state.totalSteps = p.stepCount * batches
                if Date() > deadline { timedOut = true }
                return !job.cancelled && !timedOut
            }) { made in
                if made.index == 0, let folder = job.attentionFolder, job.request.recordAttention {
                    _ = try generator.writeAttentionMaps(of: job.request, image: made.image, to: folder, overwrite: false)
                    outcome.attentionFolder = folder
                }
                outcome.images.append(made)
            }
        } catch is GenerationCancelled {
            if timedOut { throw JobTimedOut(seconds: limits.jobTimeout) }
            outcome.interrupted = true
        }
        return outcome
    }
}
