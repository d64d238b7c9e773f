import Foundation
import NestEngine

/// What a training run gives the one training loop: its schedule, one optimizer step on
/// a batch, and what it writes at the log, checkpoint and sample intervals. Base-model
/// runs (VAE, UNet, CLIP) and adapter runs both train through `TrainingLoop.run`.
protocol TrainingRunSteps: AnyObject {
    /// The trainer's step, epoch and place in the epoch's order.
    var trainingState: TrainingState { get set }
    var schedule: TrainingLoop.Schedule { get }
    /// One optimizer step on the samples at `indices`; returns the loss.
    func trainStep(_ indices: [Int]) throws -> Float
    /// The log's JSON line for a step (no newline).
    func logLine(step: Int, loss: Float, samplesPerSecond: Double) -> String
    /// Saves the checkpoint (and anything measured with it, into `log`).
    func saveCheckpoint(step: Int, log: FileHandle) throws
    func writeSample(step: Int) throws
    /// Writes what was trained, after the last step.
    func writeTrained() throws
}

enum TrainingLoop {
    /// How long a run trains and how often it logs, checkpoints and samples.
    struct Schedule {
        var totalSteps: Int
        var batchSize: Int
        var orderSeed: UInt64
        var logEvery: Int
        var checkpointEvery: Int
        var sampleEvery: Int?
        var precision: TrainingPrecision = .float32
    }

    /// Trains from the run's state until `totalSteps`; `progress(step, loss, samplesPerSecond)`
    /// after each step. The log continues after the state's step (lines past it are dropped).
    static func run(_ run: TrainingRunSteps, log url: URL, count: Int, progress: (Int, Float, Double) -> Void) throws {
        let schedule = run.schedule
        let order = SampleOrder(count: count, seed: schedule.orderSeed)
        let start = Date(), first = run.trainingState.step
        let log = try TrainingLog.open(url, continuingAfter: first)
        let bfloat16 = schedule.precision.multipliesInBFloat16
        defer { try? log.close() }
        while run.trainingState.step < schedule.totalSteps {
            var drawn = run.trainingState
            let batch = order.next(schedule.batchSize, state: &drawn)
            run.trainingState.epoch = drawn.epoch
            run.trainingState.position = drawn.position
            let loss = try MixedPrecision.with(bfloat16: bfloat16) { try run.trainStep(batch) }
            let step = run.trainingState.step
            let rate = Double((step - first) * schedule.batchSize) / max(Date().timeIntervalSince(start), 1e-9)
            progress(step, loss, rate)
            if step % schedule.logEvery == 0 || step == schedule.totalSteps {
                log.write(Data((run.logLine(step: step, loss: loss, samplesPerSecond: rate) + "\n").utf8))
            }
            if step % schedule.checkpointEvery == 0 || step == schedule.totalSteps { try run.saveCheckpoint(step: step, log: log) }
            if let every = schedule.sampleEvery, step % every == 0 { try run.writeSample(step: step) }
        }
        try run.writeTrained()
    }
}
