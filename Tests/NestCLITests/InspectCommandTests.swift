import Foundation
import NestIO
import Testing

/// `nest inspect` on broken model folders, hostile images and special files.
@Suite struct InspectCommandTests {
    /// A copy of the tiny SD1 pipeline that a test may damage.
    func modelCopy() throws -> URL {
        let dir = CLI.temporaryFolder().appendingPathComponent("model")
        try FileManager.default.copyItem(at: CLI.fixtures.appendingPathComponent("sd1"), to: dir)
        return dir
    }

    func expectOneLineFailure(_ r: CLI.Result, mentioning needles: [String]) {
        #expect(r.status != 0, "exit 0: \(r.stdout)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(r.stderr)")
        for needle in needles { #expect(r.stderr.contains(needle), "\(r.stderr) does not mention \(needle)") }
    }

    @Test func intactModelFolderSucceeds() throws {
        let dir = try modelCopy()
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let r = try CLI.run(["inspect", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("unet: diffusers.UNet2DConditionModel"))
        // What loading will hold, per precision.
        for option in ["default", "--half-weights", "--bf16"] {
            #expect(r.stdout.contains("    \(option) "), "\(r.stdout)")
        }
        #expect(r.stdout.contains("used in place from the files"), "\(r.stdout)")
    }

    @Test(arguments: ["truncated", "missing", "corrupt config", "missing weights"])
    func brokenComponentFails(damage: String) throws {
        let dir = try modelCopy()
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let fm = FileManager.default
        let component: String
        switch damage {
        case "truncated":
            component = "unet"
            let path = dir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        case "missing":
            component = "vae"
            try fm.removeItem(at: dir.appendingPathComponent("vae"))
        case "corrupt config":
            component = "text_encoder"
            try Data("{\"hidden_size\": 32,".utf8).write(to: dir.appendingPathComponent("text_encoder/config.json"))
        default:
            component = "vae"
            try fm.removeItem(at: dir.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
        }
        let r = try CLI.run(["inspect", dir.path])
        expectOneLineFailure(r, mentioning: ["component '\(component)'"])
        // What could be read is still shown.
        #expect(r.stdout.contains("scheduler:"), "\(r.stdout)")
    }

    @Test func imageTextIsEscapedAndHugeImagesAreNotDecoded() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = try RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 90, count: 48))
        let path = dir.appendingPathComponent("t.png").path
        try ImageFile.writePNG(image, to: path, text: [("Comment", "red \u{1B}[31m\nsecond line\u{07}")])
        let r = try CLI.run(["inspect", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stdout.contains("\u{1B}") && !r.stdout.contains("\u{07}"), "\(r.stdout)")
        #expect(r.stdout.contains("Comment: red \\u{1B}[31m\\nsecond line\\u{7}"), "\(r.stdout)")

        // A header claiming 20000×20000: reported from the header at once, never decoded.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for (i, v) in [UInt32(20000), 20000].enumerated() {
            for k in 0..<4 { bytes[16 + 4 * i + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * k)) }
        }
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes[12..<29] {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        for k in 0..<4 { bytes[29 + k] = UInt8(truncatingIfNeeded: ~crc >> (24 - 8 * k)) }
        let huge = dir.appendingPathComponent("huge.png").path
        try Data(bytes).write(to: URL(fileURLWithPath: huge))
        let started = Date()
        let big = try CLI.run(["inspect", huge])
        #expect(big.status == 0, "\(big.stderr)")
        #expect(big.stdout.contains("20000×20000") && big.stdout.contains("too large"), "\(big.stdout)")
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func specialFilesFailAtOnce() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["photo.png", "weights.safetensors"] {
            let path = dir.appendingPathComponent(name).path
            #expect(mkfifo(path, 0o600) == 0)
            let started = Date()
            let r = try CLI.run(["inspect", path])
            expectOneLineFailure(r, mentioning: ["FIFO"])
            #expect(Date().timeIntervalSince(started) < 5)
        }
    }
}
