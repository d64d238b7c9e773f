import Foundation
import NestDiffusion
import NestModels
import XCTest

/// A FIFO (or a folder) where a pipeline expects a config or weights file is a
/// one-line error at once: reading it would block until something writes to it.
final class SpecialFileTests: XCTestCase {
    static let pipeline = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("pipelines/sd1")

    func damagedCopy(replacing victim: String) throws -> (URL, () -> Void) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("nest-special-\(UUID().uuidString)")
        let folder = root.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.pipeline, to: folder)
        let path = folder.appendingPathComponent(victim).path
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        return (folder, { try? FileManager.default.removeItem(at: root) })
    }

    /// Runs `body` on its own thread; a blocked read is released by opening the FIFO for writing.
    func failure(within seconds: Double, fifo: String, _ body: @escaping @Sendable () throws -> Void) -> String? {
        final class Box: @unchecked Sendable { var message: String? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do { try body() } catch { box.message = String(describing: error) }
            done.signal()
        }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            XCTFail("blocked on \(fifo)")
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
            _ = done.wait(timeout: .now() + 5)
            return nil
        }
        return box.message
    }

    func testFIFOsInAPipelineFolderFailAtOnce() throws {
        let victims = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                       "tokenizer/tokenizer_config.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                       "text_encoder/model.safetensors", "vae/config.json"]
        for victim in victims {
            let (folder, cleanup) = try damagedCopy(replacing: victim)
            defer { cleanup() }
            let fifo = folder.appendingPathComponent(victim).path
            let started = Date()
            let message = failure(within: 5, fifo: fifo) { _ = try StableDiffusionPipeline.load(folder: folder) }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, victim)
            guard let message else { XCTFail("\(victim): loaded"); continue }
            XCTAssertFalse(message.contains("\n"), message)
            XCTAssertTrue(message.contains(fifo) && message.contains("FIFO"), message)
        }
    }

    func testSchedulerAndTokenizerRefuseFIFOsDirectly() throws {
        let (folder, cleanup) = try damagedCopy(replacing: "tokenizer/special_tokens_map.json")
        defer { cleanup() }
        let fifo = folder.appendingPathComponent("tokenizer/special_tokens_map.json").path
        let tokenizer = failure(within: 5, fifo: fifo) { _ = try CLIPTokenizer.load(folder: folder.appendingPathComponent("tokenizer")) }
        XCTAssertTrue(tokenizer?.contains("FIFO") == true, tokenizer ?? "no error")
        let scheduler = failure(within: 5, fifo: fifo) { _ = try SchedulerConfig.load(from: URL(fileURLWithPath: fifo)) }
        XCTAssertTrue(scheduler?.contains("FIFO") == true, scheduler ?? "no error")
    }
}
