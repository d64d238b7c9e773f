import Foundation
@testable import NestEngine
@testable import NestTraining
import Testing

/// `"precision": "bf16"`: both kinds of run config read it, and the one
/// training loop runs each step inside the bfloat16 scope exactly when the
/// config asks for it and this CPU's bfloat16 products are faster; otherwise
/// float32, with a note saying why.
@Suite struct TrainingPrecisionTests {
    @Test func bothConfigsReadThePrecision() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-precision-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        try Data(TrainingConfigTests.edited(TrainingConfigTests.adapterBase, "training.precision", "bf16").utf8).write(to: url)
        #expect(try AdapterRunConfig.load(from: url).training.precision == .bf16)
        try Data(TrainingConfigTests.adapterBase.utf8).write(to: url)
        #expect(try AdapterRunConfig.load(from: url).training.precision == .float32)
        try Data(TrainingConfigTests.edited(TrainingConfigTests.baseBase, "precision", "bf16").utf8).write(to: url)
        #expect(try BaseRunConfig.load(from: url).precision == .bf16)
    }

    /// Records, per step, whether GEMMs multiplied in bfloat16.
    final class Recorder: TrainingRunSteps {
        var trainingState = TrainingState()
        let schedule: TrainingLoop.Schedule
        var seen: [Bool] = []
        init(_ precision: TrainingPrecision) {
            schedule = .init(totalSteps: 3, batchSize: 2, orderSeed: 1, logEvery: 1, checkpointEvery: 100, precision: precision)
        }
        func trainStep(_ indices: [Int]) throws -> Float {
            // On a worker too: the scope reaches the engine's threads.
            var onWorkers = [Bool](repeating: false, count: 2)
            onWorkers.withUnsafeMutableBufferPointer { flags in
                let base = flags.baseAddress!
                Threads.$taskOverride.withValue(2) {
                    parallelRanges(2) { r in for i in r { base[i] = MixedPrecision.bfloat16Products } }
                }
            }
            seen.append(MixedPrecision.bfloat16Products && onWorkers.allSatisfy { $0 })
            trainingState.step += 1
            return 1
        }
        func logLine(step: Int, loss: Float, samplesPerSecond: Double) -> String { "{}" }
        func saveCheckpoint(step: Int, log: FileHandle) throws {}
        func writeSample(step: Int) throws {}
        func writeTrained() throws {}
    }

    func run(_ precision: TrainingPrecision, pays: Bool) throws -> [Bool] {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("nest-precision-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: log) }
        let recorder = Recorder(precision)
        try MixedPrecision.$assumePays.withValue(pays) {
            try TrainingLoop.run(recorder, log: log, count: 6) { _, _, _ in }
        }
        return recorder.seen
    }

    @Test func theLoopMultipliesInBFloat16OnlyWhereAskedAndFaster() throws {
        #expect(try run(.bf16, pays: true) == Array(repeating: MixedPrecision.available, count: 3))
        #expect(try run(.bf16, pays: false) == [false, false, false])
        #expect(try run(.float32, pays: true) == [false, false, false])
        #expect(!MixedPrecision.bfloat16Products, "the scope outlived the run")
        // The note: only for bf16 that falls back, naming the reason.
        MixedPrecision.$assumePays.withValue(false) {
            let note = TrainingPrecision.bf16.fallbackNote
            #expect(note?.contains("training in float32") == true && note?.contains("\n") == false, "\(note ?? "nil")")
            #expect(TrainingPrecision.float32.fallbackNote == nil)
        }
        MixedPrecision.$assumePays.withValue(true) {
            #expect((TrainingPrecision.bf16.fallbackNote == nil) == MixedPrecision.available)
        }
    }
}
