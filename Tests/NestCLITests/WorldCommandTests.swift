import Foundation
import NestIO
import NestTraining
import Testing

/// `nest world dataset` writes data the trainers read without a single bad record.
@Suite struct WorldCommandTests {
    @Test func datasetIsATrainingManifest() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("world").path
        let r = try CLI.run(["world", "dataset", "--output", out, "--identities", "2", "--contexts", "3", "--placeholder", "<subject>"])
        #expect(r.status == 0, "\(r.stderr)")
        let manifest = try TrainingManifest(url: URL(fileURLWithPath: out).appendingPathComponent("manifest.jsonl"),
                                            placeholder: "<subject>", requireReferences: true, policy: .fail)
        #expect(manifest.samples.count == 12 && manifest.problems.isEmpty)
        let again = try CLI.run(["world", "dataset", "--output", out])
        #expect(again.status != 0 && again.stderr.contains("already exists"))
    }
}

/// `nest world subject` never replaces an existing file, as the other world
/// commands, and says so without pointing at a flag it does not have.
@Suite struct WorldSubjectCommandTests {
    @Test func anExistingOutputIsKept() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("subject.png").path
        try Data("mine".utf8).write(to: URL(fileURLWithPath: out))
        let r = try CLI.run(["world", "subject", "--domain", "critter", "--seed", "3", "--output", out])
        #expect(r.status == 1 && r.stderr.contains("already exists") && !r.stderr.contains("--overwrite"), "\(r.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data("mine".utf8))
        try FileManager.default.removeItem(atPath: out)
        let fresh = try CLI.run(["world", "subject", "--domain", "critter", "--seed", "3", "--output", out])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(try ImageFile.decode(path: out).width > 0)
    }
}

/// Framings and image sides from the command line: a bad name or side is
/// refused in one line naming it; a good one draws the asked-for side.
@Suite struct WorldFramingCommandTests {
    @Test func framingsAndSidesAreCheckedAndDrawn() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = try CLI.run(["world", "dataset", "--output", dir.appendingPathComponent("a").path,
                               "--framings", "portrait,selfie"])
        #expect(bad.status != 0 && bad.stderr.contains("selfie"), "\(bad.stderr)")
        let odd = try CLI.run(["world", "subject", "--domain", "bot", "--seed", "2", "--size", "100",
                               "--output", dir.appendingPathComponent("odd.png").path])
        #expect(odd.status != 0 && odd.stderr.contains("100"), "\(odd.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("odd.png").path))
        let out = dir.appendingPathComponent("near.png").path
        let good = try CLI.run(["world", "subject", "--domain", "bot", "--seed", "2", "--framing", "close-up",
                                "--size", "96", "--output", out])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(try ImageFile.decode(path: out).width == 96)
        let badReference = try CLI.run(["world", "dataset", "--output", dir.appendingPathComponent("b").path,
                                        "--portraits", "1", "--reference-framing", "headshot"])
        #expect(badReference.status != 0 && badReference.stderr.contains("--reference-framing") && badReference.stderr.contains("headshot"),
                "\(badReference.stderr)")
        // nest eval: scene and near framings are not mixed; the trade-off is one context set, not an autoencoder check.
        for (arguments, named) in [(["--framing", "scene,portrait"], "--framing"), (["--reference-framing", "selfie"], "selfie"),
                                   (["--tradeoff", "--autoencoder-only"], "--tradeoff"), (["--tradeoff", "--contexts", "both"], "--tradeoff"),
                                   (["--individuals", dir.path, "--seed", "3"], "--individuals"),
                                   (["--bounds", "--steps", "3"], "--bounds"),
                                   (["--individuals", dir.appendingPathComponent("none").path], "none/identities.json")] {
            let r = try CLI.run(["eval", "--output", dir.appendingPathComponent("e").path] + arguments)
            #expect(r.status != 0 && r.stderr.contains(named), "\(arguments): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("b").path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("e").path))
    }

    /// `world model --framings` records them in world.json, and `nest eval` prompts in them
    /// unless told otherwise.
    @Test func evalTakesTheWorldsFramings() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let skeleton = dir.appendingPathComponent("skeleton")
        #expect(try CLI.run(["world", "model", "--output", skeleton.path, "--framings", "portrait,close-up"]).status == 0)
        let written = try Data(contentsOf: skeleton.appendingPathComponent("world.json"))
        // The shipped world with that file replaced.
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: CLI.root.appendingPathComponent("Sources/nest/Resources/world"), to: model)
        try written.write(to: model.appendingPathComponent("world.json"))
        func check(_ extra: [String], _ expected: String, metric: String) throws {
            let out = dir.appendingPathComponent("eval-\(extra.joined(separator: "_"))")
            let r = try CLI.run(["eval", "--model", model.path, "--output", out.path, "--autoencoder-only",
                                 "--identities", "1", "--prompts", "1"] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            let report = try String(contentsOf: out.appendingPathComponent("results.md"), encoding: .utf8)
            #expect(report.contains("framing \(expected),"), "\(report)")
            #expect(report.contains(metric), "\(report)")
        }
        // Near framings are scored on the finer metric unless told otherwise; the wide shot on the coarser.
        try check([], "portrait, close-up", metric: "32×32 features among 31 distractors")
        try check(["--framing", "half-body", "--feature-side", "16"], "half-body", metric: "16×16 features among 31 distractors")
        try check(["--framing", "scene", "--distractors", "3"], "scene", metric: "16×16 features among 3 distractors")
        try Data(#"{"framings": ["scene", "portrait"], "reference_framing": "close-up"}"#.utf8)
            .write(to: model.appendingPathComponent("world.json"))
        let mixed = try CLI.run(["eval", "--model", model.path, "--output", dir.appendingPathComponent("m").path,
                                 "--autoencoder-only"])
        #expect(mixed.status != 0 && mixed.stderr.contains("world.json") && mixed.stderr.contains("cannot be mixed"), "\(mixed.stderr)")
    }
}
