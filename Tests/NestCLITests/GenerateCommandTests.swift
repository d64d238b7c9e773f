import Foundation
import NestEngine
import NestIO
import Testing

/// Runs the built `nest` executable as a user would.
enum CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/NestDiffusionTests/Fixtures/pipelines")

    /// The `nest` binary built next to the test bundle.
    static let executable: URL = {
        var dir = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("nest")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return root.appendingPathComponent(".build/debug/nest")
    }()

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    static func run(_ arguments: [String], in directory: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    static func temporaryFolder() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nest-cli-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

@Suite struct GenerateCommandTests {
    let sdxl = CLI.fixtures.appendingPathComponent("sdxl").path

    func generate(_ extra: [String], output: String) throws -> CLI.Result {
        try CLI.run(["generate", "--model", sdxl, "--prompt", "a photo of a cat", "--steps", "2", "--seed", "1",
                     "--output", output] + extra)
    }

    @Test func sameImageAsDiffusersFromTheCommandLine() throws {
        // Case 10 of the pipeline fixtures: SDXL-like, Euler, seed 31, 4 steps, guidance 5.
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("cat.png").path
        let r = try CLI.run(["generate", "--model", sdxl, "--prompt", "a photo of a cat", "--steps", "4", "--seed", "31",
                             "--guidance", "5", "--scheduler", "euler", "--output", path])
        #expect(r.status == 0, "\(r.stderr)")
        let image = try ImageFile.decode(path: path)
        let expected = try SafeTensorsFile(path: CLI.fixtures.appendingPathComponent("images.safetensors").path).tensor("case10")
        var worst = 0
        for i in 0..<image.pixels.count { worst = max(worst, abs(Int(image.pixels[i]) - Int((expected.data[i] * 255).rounded()))) }
        #expect(worst <= 2, "CLI image differs from diffusers by \(worst)/255")
        let text = try ImageFile.readPNGText(path: path)
        #expect(text.first { $0.key == "parameters" }?.value.contains("Seed: 31") == true)
    }

    @Test func countWritesNumberedFiles() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try generate(["--count", "2"], output: dir.appendingPathComponent("batch.png").path)
        #expect(r.status == 0, "\(r.stderr)")
        for i in 1...2 { #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("batch-\(i).png").path)) }
    }

    @Test(arguments: [
        (["--scheduler", "plms"], "plms"),
        (["--steps", "0"], "--steps must be between 1 and 1000, got 0"),
        (["--width", "33"], "--width 33 is not a multiple of 4"),
        (["--height", "34"], "--height 34 is not a multiple of 4"),
        (["--count", "0"], "--count must be between 1 and 10000, got 0"),
    ])
    func badInputFailsClearly(arguments: [String], message: String) throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.png").path
        let r = try generate(arguments, output: path)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path), "a failed run must leave no file")
    }

    @Test func unreadableModelFolder() throws {
        let r = try CLI.run(["generate", "--model", "/nonexistent/model", "--prompt", "x", "--output", "/tmp/nest-never.png"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("/nonexistent/model"), "stderr: \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one clear line, got: \(r.stderr)")
    }

    @Test func unwritableOutputFailsBeforeGenerating() throws {
        let r = try generate([], output: "/nonexistent-folder/x.png")
        #expect(r.status != 0)
        #expect(r.stderr.contains("does not exist"), "stderr: \(r.stderr)")
    }

    @Test func existingOutputIsNotOverwritten() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("keep.png").path
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        let r = try generate([], output: path)
        #expect(r.status != 0)
        #expect(r.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
        #expect(try generate(["--overwrite"], output: path).status == 0)
    }

    @Test func longPromptIsTruncatedWithAWarning() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let long = Array(repeating: "robot", count: 90).joined(separator: " ")
        let r = try CLI.run(["generate", "--model", sdxl, "--prompt", long, "--steps", "1", "--seed", "1",
                             "--output", dir.appendingPathComponent("long.png").path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning: the prompt is 90 tokens"), "stderr: \(r.stderr)")
    }
}
