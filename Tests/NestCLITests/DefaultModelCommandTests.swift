import Foundation
import NestIO
import Testing

/// The README's first command: personalized generation with the embedded
/// miniature world, no download and no --model.
@Suite struct DefaultModelCommandTests {
    static let critter = CLI.root.appendingPathComponent("examples/critter.png").path
    static let bot = CLI.root.appendingPathComponent("examples/bot.png").path

    @Test func firstCommandPersonalizesWithTheEmbeddedWorld() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let prompt = "a <critter> wearing a red hat on the beach"
        let r = try CLI.run(["generate", "--prompt", prompt, "--subject", "<critter>=\(Self.critter)", "--seed", "1"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        let image = try ImageFile.decode(path: dir.appendingPathComponent("nest.png").path)
        #expect(image.width == 64 && image.height == 64)
        let mean = image.pixels.reduce(0) { $0 + Int($1) } / image.pixels.count
        let spread = image.pixels.reduce(0) { $0 + abs(Int($1) - mean) } / image.pixels.count
        #expect(spread > 10, "a picture, not a flat field (mean deviation \(spread))")

        // The subject changes the picture: the class word with the same seed and steps differs.
        let short = try CLI.run(["generate", "--prompt", prompt, "--subject", "<critter>=\(Self.critter)", "--seed", "1",
                                 "--steps", "6", "--output", "subject.png"], in: dir)
        let plain = try CLI.run(["generate", "--prompt", "a critter wearing a red hat on the beach", "--seed", "1",
                                 "--steps", "6", "--output", "plain.png"], in: dir)
        #expect(short.status == 0 && plain.status == 0, "\(short.stderr) \(plain.stderr)")
        let withSubject = try ImageFile.decode(path: dir.appendingPathComponent("subject.png").path)
        let withoutSubject = try ImageFile.decode(path: dir.appendingPathComponent("plain.png").path)
        #expect(withSubject.pixels != withoutSubject.pixels)

        // Nothing a user made is overwritten.
        let again = try CLI.run(["generate", "--prompt", prompt, "--subject", "<critter>=\(Self.critter)"], in: dir)
        #expect(again.status != 0 && again.stderr.contains("already exists"))
        #expect(try ImageFile.decode(path: dir.appendingPathComponent("nest.png").path) == image)
    }

    @Test func twoSubjectsFromTwoDomains() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["generate", "--prompt", "a large <critter> on the left in the forest with a <bot>, flat style",
                             "--subject", "<critter>=\(Self.critter)", "--subject", "<bot>=\(Self.bot)",
                             "--steps", "10", "--output", "two.png"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("two.png").path))
        let unknown = try CLI.run(["generate", "--prompt", "a <dragon>", "--subject", "<dragon>=\(Self.critter)",
                                   "--output", "x.png"], in: dir)
        #expect(unknown.status != 0 && unknown.stderr.split(separator: "\n").count == 1, "\(unknown.stderr)")
    }

    /// The embedded world is stored as float16, so holding its weights as
    /// float16 in memory changes nothing: the same image, byte for byte.
    @Test func halfWeightsAreLosslessForTheFloat16World() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["generate", "--prompt", "a <critter> in the snow", "--subject", "<critter>=\(Self.critter)", "--seed", "3", "--steps", "4"]
        let full = try CLI.run(common + ["--output", "full.png"], in: dir)
        let half = try CLI.run(common + ["--output", "half.png", "--half-weights"], in: dir)
        #expect(full.status == 0 && half.status == 0, "\(full.stderr) \(half.stderr)")
        let a = try ImageFile.decode(path: dir.appendingPathComponent("full.png").path)
        let b = try ImageFile.decode(path: dir.appendingPathComponent("half.png").path)
        #expect(a.pixels == b.pixels)
    }

    /// `--bf16` rounds the weights (and, on BF16 hardware, the products'
    /// operands): the image changes, but only a little; with --half-weights
    /// it is refused in one line.
    @Test func bfloat16GeneratesNearlyTheSameImage() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["generate", "--prompt", "a <critter> in the snow", "--subject", "<critter>=\(Self.critter)", "--seed", "3", "--steps", "4"]
        let full = try CLI.run(common + ["--output", "full.png"], in: dir)
        let narrow = try CLI.run(common + ["--output", "bf16.png", "--bf16"], in: dir)
        #expect(full.status == 0 && narrow.status == 0, "\(full.stderr) \(narrow.stderr)")
        let a = try ImageFile.decode(path: dir.appendingPathComponent("full.png").path)
        let b = try ImageFile.decode(path: dir.appendingPathComponent("bf16.png").path)
        #expect(a.pixels != b.pixels)
        let meanDifference = zip(a.pixels, b.pixels).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(a.pixels.count)
        #expect(meanDifference < 3, "mean |difference| \(meanDifference) of 255")
        let both = try CLI.run(common + ["--output", "x.png", "--bf16", "--half-weights"], in: dir)
        #expect(both.status != 0 && both.stderr.split(separator: "\n").count == 1, "\(both.stderr)")
    }

    /// `nest eval` end to end at a tiny size: the table with its validation rows.
    @Test func evalWritesTheTable() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["eval", "--output", "eval", "--identities", "1", "--prompts", "1", "--steps", "2"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        let table = try String(contentsOf: dir.appendingPathComponent("eval/results.md"), encoding: .utf8)
        for row in ["ground truth (render at an unseen seed)", "ground truth through the VAE", "base model, class word",
                    "Nested Attention", "two subjects: Nested Attention", "no adapter saw in training",
                    "Identity against the base model on the same cases", "- Nested Attention: "] {
            #expect(table.contains(row), "missing: \(row)")
        }
        let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("eval/results.json"))) as! [[String: Any]]
        #expect(rows.count >= 7 && rows.allSatisfy { ($0["identity"] as! Double) >= 0 && ($0["identity"] as! Double) <= 1 })
        // Per-case identity hits travel with every row (one per scored subject).
        #expect(rows.allSatisfy { ($0["identityHits"] as? [Bool])?.isEmpty == false })
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("eval/samples.png").path))
        let again = try CLI.run(["eval", "--output", "eval", "--identities", "1"], in: dir)
        #expect(again.status != 0 && again.stderr.contains("already exists"))
    }
}
