import Foundation
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
