import Foundation
import NestEngine
import NestIO
import Testing

/// `nest generate` given hostile input: one line, a non-zero status, no file — and
/// for the checks that need no model, before any model is read.
@Suite struct HostileGenerateTests {
    let sdxl = CLI.fixtures.appendingPathComponent("sdxl").path

    /// Runs with a fresh output path; returns the result and whether the output exists.
    func run(_ arguments: [String], model: String? = nil) throws -> (CLI.Result, Bool) {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.png").path
        let r = try CLI.run(["generate", "--model", model ?? sdxl, "--steps", "1", "--output", out] + arguments)
        return (r, FileManager.default.fileExists(atPath: out))
    }

    /// One error line, after at most the status lines of loading and steps when the error comes from generating.
    func expectOneLineError(_ r: CLI.Result, _ fragment: String, wrote: Bool, _ note: String = "", afterLoading: Bool = false) {
        #expect(r.status != 0, "\(note): must fail")
        let lines = r.stderr.split(separator: "\n")
        let status = lines.dropLast().allSatisfy { afterLoading && ($0.hasPrefix("loaded ") || $0.hasPrefix("step ")) }
        #expect(lines.last?.hasPrefix("nest: error: ") == true && status, "\(note): one line, got \(r.stderr)")
        #expect(r.stderr.contains(fragment), "\(note): expected \(fragment), got \(r.stderr)")
        #expect(!wrote, "\(note): a failed run leaves no file")
    }

    @Test(arguments: [
        (["--guidance", "nan"], "--guidance must be a finite number"),
        (["--guidance", "inf"], "--guidance must be a finite number"),
        (["--guidance-rescale", "nan"], "--guidance-rescale must be a finite number"),
        (["--steps", "-1"], "--steps must be between 1 and 1000, got -1"),
        (["--steps", "0"], "--steps must be between 1"),
        (["--seed", "-5"], "'-5' is invalid for '--seed"),
        (["--width", "100000"], "--width must be between 1 and 4096"),
        (["--width", "4096", "--height", "4096"], "more than the 4194304 allowed"),
        (["--count", "10001"], "--count must be between 1 and 10000"),
        (["--count", "-3"], "--count must be between 1"),
        (["--batch-size", "17"], "--batch-size must be between 1 and 16"),
        (["--value-norm", "nan"], "--value-norm must be a finite number"),
        (["--token-weight", "inf"], "--token-weight must be a finite number"),
        (["--token-weight", "0"], "--token-weight must be positive"),
        (["--subject-scale", "-inf"], "--subject-scale must be a finite number"),
        (["--width", "33"], "--width 33 is not a multiple of 4 (the VAE's 2× × the UNet's 2× downsampling)"),
        (["--save-attention", "/tmp/nest-maps-never"], "--save-attention records the subject tokens' attention, but no --subject"),
        (["--subject", "<critter>="], "--subject <critter>=: no image path"),
        (["--subject", "=x.png"], "--subject must look like TOKEN=IMAGE"),
        (["--half-weights", "--bf16"], "choose one"),
        (["--variant", "../../etc/passwd"], "--variant is a weight-file suffix such as fp16"),
        (["--output", "/tmp"], "--output must end in .png"),
    ])
    func badNumbersAndOptions(arguments: [String], message: String) throws {
        let (r, wrote) = try run(["--prompt", "a cat"] + arguments)
        expectOneLineError(r, message, wrote: wrote, arguments.joined(separator: " "))
        #expect(!r.stderr.contains("loaded"), "checked before the model loads: \(r.stderr)")
    }

    @Test func aFolderIsNotAnOutputFile() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = dir.appendingPathComponent("out.png")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let r = try CLI.run(["generate", "--model", sdxl, "--prompt", "a cat", "--steps", "1", "--overwrite", "--output", folder.path])
        expectOneLineError(r, "out.png is a folder; --output names a PNG file", wrote: false)
    }

    @Test func aHugePromptIsRefused() throws {
        let (r, wrote) = try run(["--prompt", String(repeating: "cat ", count: 5001)])
        expectOneLineError(r, "--prompt is 20004 characters, more than the 20000 allowed", wrote: wrote)
    }

    @Test func seedMinusOneIsARandomSeed() throws {
        let (r, wrote) = try run(["--prompt", "a cat", "--seed", "-1"])
        #expect(r.status == 0 && wrote, "\(r.stderr)")
        #expect(r.stderr.contains(", seed "), "the drawn seed is printed: \(r.stderr)")
    }

    @Test func aMistypedCommandIsNamed() throws {
        let r = try CLI.run(["generat", "-p", "x"])
        expectOneLineError(r, "unknown command \"nest generat\" (did you mean \"nest generate\"?)", wrote: false)
        let sub = try CLI.run(["train", "adaptr", "--config", "x.json"])
        expectOneLineError(sub, "did you mean \"nest train adapter\"", wrote: false)
    }

    @Test func aPlaceholderWithoutItsSubjectIsRefused() throws {
        // The embedded world's adapters know <critter>; naming it with no photo would draw an unknown word.
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.png").path
        let r = try CLI.run(["generate", "--prompt", "a <critter> on the beach", "--steps", "1", "--output", out])
        expectOneLineError(r, "--prompt names the subject <critter> but no image of <critter> was given",
                           wrote: FileManager.default.fileExists(atPath: out))
    }

    @Test func countIsWrittenBatchByBatchWithSteppedSeeds() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("b.png").path
        let r = try CLI.run(["generate", "--model", sdxl, "--prompt", "a cat", "--steps", "1", "--seed", "40",
                             "--count", "3", "--batch-size", "2", "--output", out])
        #expect(r.status == 0, "\(r.stderr)")
        let seeds = try (1...3).map { i -> String in
            let text = try ImageFile.readPNGText(path: dir.appendingPathComponent("b-\(i).png").path)
            let parameters = text.first { $0.key == "parameters" }?.value ?? ""
            return String(parameters.split(separator: ",").first { $0.contains("Seed:") } ?? "")
        }
        #expect(seeds == [" Seed: 40", " Seed: 40", " Seed: 41"], "\(seeds)")
        // The first batch is diffusers' two images from seed 40; batch two starts over from 41.
        let single = dir.appendingPathComponent("s.png").path
        #expect(try CLI.run(["generate", "--model", sdxl, "--prompt", "a cat", "--steps", "1", "--seed", "41", "--output", single]).status == 0)
        #expect(try ImageFile.decode(path: single).pixels == ImageFile.decode(path: dir.appendingPathComponent("b-3.png").path).pixels)
    }

    @Test func nonFiniteWeightsFailInsteadOfWritingBlack() throws {
        let fm = FileManager.default
        let dir = CLI.temporaryFolder()
        defer { try? fm.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try fm.copyItem(atPath: sdxl, toPath: model.path)
        // Every float of the UNet's weights becomes NaN (all bits set), the header untouched.
        let weights = try fm.contentsOfDirectory(atPath: model.appendingPathComponent("unet").path).first { $0.hasSuffix(".safetensors") }!
        let url = model.appendingPathComponent("unet/\(weights)")
        var data = try Data(contentsOf: url)
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        data.replaceSubrange((8 + headerLength)..<data.count, with: [UInt8](repeating: 0xFF, count: data.count - 8 - headerLength))
        try data.write(to: url)
        let (r, wrote) = try run(["--prompt", "a cat"], model: model.path)
        expectOneLineError(r, "non-finite values (denoising step 1 of 1)", wrote: wrote, afterLoading: true)
    }

    @Test func attentionMapsAreCheckedBeforeGenerating() throws {
        let setup = SubjectCommandTests.setup
        let maps = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: maps) }
        try Data("earlier".utf8).write(to: maps.appendingPathComponent("critter-0-outer.png"))
        let (r, wrote) = try run(["--prompt", "a <critter>", "--adapter", setup.adapter, "--subject", "<critter>=\(setup.photo)",
                                  "--save-attention", maps.path], model: setup.folder.path)
        expectOneLineError(r, "already holds attention maps of <critter> (critter-0-outer.png)", wrote: wrote)
        #expect(!r.stderr.contains("loaded"), "checked before the model loads")
        #expect(try String(contentsOf: maps.appendingPathComponent("critter-0-outer.png"), encoding: .utf8) == "earlier")
        let file = maps.appendingPathComponent("critter-0-outer.png").path
        let (notFolder, _) = try run(["--prompt", "a <critter>", "--adapter", setup.adapter, "--subject", "<critter>=\(setup.photo)",
                                      "--save-attention", file], model: setup.folder.path)
        expectOneLineError(notFolder, "is a file, not a folder", wrote: false)
    }

    @Test(arguments: [
        (["eval", "-o", "/tmp/nest-eval-never", "--steps", "0"], "--steps must be between 1 and 1000, got 0"),
        (["eval", "-o", "/tmp/nest-eval-never", "--guidance", "nan"], "--guidance must be a finite number"),
        (["eval", "-o", "/tmp/nest-eval-never", "--identities", "100000"], "--identities must be between 1 and 1000"),
        (["eval", "-o", "/nonexistent-folder/eval", "--identities", "1"], "folder /nonexistent-folder does not exist or is not writable"),
        (["eval", "-o", "/tmp/nest-eval-never", "--seed", "1099511627776"], "--seed must be between 0 and 1099511627775, got 1099511627776"),
        (["eval", "-o", "/tmp/nest-eval-never", "--all-contexts", "--contexts", "seen"], "--all-contexts and --contexts cannot be combined"),
        (["demo", "--threads", "-1"], "--threads must be between 1 and 1024, got -1"),
        (["demo", "--steps", "0", "-o", "/tmp/nest-demo-never.png"], "--steps must be between 1 and 100000"),
    ])
    func otherCommandsBoundTheirNumbers(arguments: [String], message: String) throws {
        let r = try CLI.run(arguments)
        expectOneLineError(r, message, wrote: FileManager.default.fileExists(atPath: "/tmp/nest-eval-never"), arguments.joined(separator: " "))
    }

    @Test func inspectSystemPrintsTheEngineConfiguration() throws {
        let r = try CLI.run(["inspect", "--system"])
        #expect(r.status == 0, "\(r.stderr)")
        for variable in ["NEST_THREADS", "NEST_POOL_MB", "NEST_WINOGRAD", "AVX512_BF16"] { #expect(r.stdout.contains(variable), "\(r.stdout)") }
        // The kernel line names the vector kernels this CPU actually runs.
        let kernels = VectorKernels.available ? "kernels: AVX-512," : VectorKernels.availableAVX2 ? "kernels: AVX2+FMA" : "kernels: portable"
        #expect(r.stdout.contains(kernels), "\(r.stdout)")
        let none = try CLI.run(["inspect"])
        #expect(none.status != 0 && none.stderr.contains("give a PATH to inspect, or --system"), "\(none.stderr)")
    }
}
