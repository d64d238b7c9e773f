import Foundation
import Testing

/// An adapter that does not fit the model's image encoder is refused when it is
/// loaded, in one line naming the file and the key (it used to crash inside the encoder).
@Suite struct HostileAdapterCommandTests {
    @Test func featureLayerBeyondTheWorldEncoderIsRefused() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shipped = CLI.root.appendingPathComponent("Sources/nest/Resources/world/adapters")
        try FileManager.default.copyItem(at: shipped.appendingPathComponent("critter.safetensors"),
                                         to: dir.appendingPathComponent("critter.safetensors"))
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: shipped.appendingPathComponent("critter.json"))) as! [String: Any]
        var encoder = config["image_encoder"] as! [String: Any]
        encoder["feature_layer"] = 5
        config["image_encoder"] = encoder
        let adapter = dir.appendingPathComponent("critter.json")
        try JSONSerialization.data(withJSONObject: config).write(to: adapter)

        let r = try CLI.run(["generate", "--prompt", "a <critter> in the snow", "--adapter", adapter.path,
                             "--subject", "<critter>=\(CLI.root.appendingPathComponent("examples/critter.png").path)",
                             "--steps", "1", "--output", "out.png"], in: dir)
        #expect(r.status != 0 && r.status != 139 && r.status != 11, "\(r.status) \(r.stderr)")
        // Progress ("loaded … in 4 s") may precede it; the error itself is one line.
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("nest: error:") }
        #expect(errors.count == 1 && r.stderr.hasSuffix("\n") && r.stderr.split(separator: "\n").last == errors.first, "\(r.stderr)")
        for needle in [adapter.path, "image_encoder.feature_layer", "-5...4"] {
            #expect(r.stderr.contains(needle), "\(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.png").path))
    }
}
