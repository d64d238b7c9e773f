import Foundation
import NestEngine
import NestIO
import Testing

/// `nest generate` with random combinations of hostile option values: every run either
/// writes decodable images and exits 0, or exits non-zero with one `nest: error:` line
/// and no file — never a crash, a hang or a partial file. Seeded; `NEST_FUZZ_SCALE`
/// multiplies the number of runs.
@Suite struct CommandFuzzTests {
    static let sdxl = CLI.fixtures.appendingPathComponent("sdxl").path
    static let initImage = CLI.root.appendingPathComponent("Tests/NestDiffusionTests/Fixtures/img2img/init_32x32.png").path

    static let values: [String: [String]] = [
        "--steps": ["1", "2", "0", "-1", "1001", "nan", "1e9", "abc", ""],
        "--guidance": ["0", "1", "7.5", "nan", "inf", "-inf", "-3", "1e30", "101", "0x10"],
        "--guidance-rescale": ["0", "0.5", "1", "2", "nan", "-0"],
        "--width": ["32", "64", "33", "0", "-32", "100000", "nan", "4097"],
        "--height": ["32", "48", "34", "0", "-1", "99999999999999999999"],
        "--count": ["1", "2", "0", "-1", "10001"],
        "--batch-size": ["1", "2", "0", "17", "-4"],
        "--seed": ["-1", "0", "7", "18446744073709551615", "18446744073709551616", "-2", "x"],
        "--scheduler": ["euler", "euler-a", "ddim", "dpm++2m", "lcm", "plms", ""],
        "--timestep-spacing": ["trailing", "leading", "linspace", "sideways"],
        "--init-image": ["INIT", "/nonexistent.png", "FIFO", "FOLDER", "/dev/zero"],
        "--strength": ["1", "0.5", "0", "nan", "-0.1", "2"],
        "--negative-prompt": ["", "blurry", "\u{1B}[2J\u{7}", String(repeating: "x", count: 20_001)],
        "--variant": ["fp16", "../x", "", "a b"],
        "--subject": ["<critter>=", "=x", "<x>=/nonexistent.png", "<x>=/dev/zero", "<x>=FIFO", "<x>=FOLDER"],
        "--save-attention": ["FOLDER", "/nonexistent/maps"],
        "--threads": ["1", "2", "0", "-1", "100000"],
        "--value-norm": ["1", "nan", "-1", "inf"],
        "--token-weight": ["1", "0", "inf", "-2"],
        "--subject-scale": ["1", "nan", "11"],
    ]
    static let prompts = ["a cat", "", "\u{0}\u{1}\u{2}", "a <critter> on the beach", "猫 🐈 é", String(repeating: "dog ", count: 100)]

    @Test func randomOptionCombinations() throws {
        let scale = Int(ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"] ?? "") ?? 1
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let keys = Self.values.keys.sorted()
        var rng = SeededRandom(seed: 77)
        var outcomes = [0, 0]
        for n in 0..<(24 * scale) {
            let caseDir = dir.appendingPathComponent("case\(n)")
            try FileManager.default.createDirectory(at: caseDir, withIntermediateDirectories: true)
            let out = caseDir.appendingPathComponent("out.png").path
            var arguments = ["generate", "--model", Self.sdxl, "--output", out, "--steps", "1",
                             "--prompt", Self.prompts[rng.nextInt(below: Self.prompts.count)]]
            for _ in 0..<(1 + rng.nextInt(below: 4)) {
                let key = keys[rng.nextInt(below: keys.count)], options = Self.values[key]!
                let value = options[rng.nextInt(below: options.count)]
                    .replacingOccurrences(of: "FIFO", with: fifo).replacingOccurrences(of: "FOLDER", with: caseDir.path)
                    .replacingOccurrences(of: "INIT", with: Self.initImage)
                arguments += [key, value]
            }
            let r = try CLI.run(arguments, timeout: 60)
            let label = "case \(n): \(arguments.dropFirst(5).map { Escaped.text($0, limit: 40) })"
            #expect(!r.timedOut, "\(label): hung")
            #expect(!r.crashed, "\(label): crashed: \(r.stderr)")
            let written = try FileManager.default.contentsOfDirectory(atPath: caseDir.path).filter { $0.hasSuffix(".png") }
            if r.status == 0 {
                outcomes[0] += 1
                #expect(!written.isEmpty, "\(label): exit 0 but no image")
                for file in written { #expect((try? ImageFile.decode(path: caseDir.appendingPathComponent(file).path)) != nil, "\(label)") }
            } else {
                outcomes[1] += 1
                let lines = r.stderr.split(separator: "\n")
                #expect(lines.filter { $0.hasPrefix("nest: error: ") }.count == 1 && lines.last?.hasPrefix("nest: error: ") == true,
                        "\(label): one error line, got \(r.stderr)")
                #expect(written.isEmpty, "\(label): a failed run left \(written)")
            }
        }
        print("command fuzz: \(24 * scale) runs, \(outcomes[0]) succeeded, \(outcomes[1]) refused")
    }
}

extension CLI {
    struct TimedResult { let status: Int32; let stderr: String; let timedOut: Bool; let crashed: Bool }

    /// Runs `nest` with a time limit; a run past it is killed and reported as hung.
    static func run(_ arguments: [String], timeout: TimeInterval) throws -> TimedResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = DispatchTime.now() + timeout
        let done = DispatchSemaphore(value: 0)
        var errData = Data()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); done.signal() }
        let timedOut = done.wait(timeout: deadline) == .timedOut
        // SIGKILL: a child of the test runner may inherit a mask that blocks SIGTERM.
        if timedOut { kill(process.processIdentifier, SIGKILL); done.wait() }
        process.waitUntilExit()
        return TimedResult(status: process.terminationStatus, stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut,
                           crashed: process.terminationReason == .uncaughtSignal && !timedOut)
    }
}
