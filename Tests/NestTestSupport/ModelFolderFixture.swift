import Foundation

/// Test model folders assembled from the committed fixtures without copying them.
public enum ModelFolderFixture {
    /// The Tests folder.
    public static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// A fresh temporary folder `PREFIX-UUID` holding the `flavour` pipeline fixture
    /// (NestDiffusionTests) plus that flavour's image_encoder/ and feature_extractor/
    /// (NestModelsTests), linked, with model_index.json naming the two additions.
    public static func withImageEncoder(_ flavour: String, prefix: String) -> URL {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try! fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let pipeline = tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines/\(flavour)")
        for name in try! fm.contentsOfDirectory(atPath: pipeline.path) where name != "model_index.json" {
            try! fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: pipeline.appendingPathComponent(name))
        }
        let models = tests.appendingPathComponent("NestModelsTests/Fixtures/\(flavour)")
        for name in ["image_encoder", "feature_extractor"] {
            try! fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: models.appendingPathComponent(name))
        }
        var index = try! JSONSerialization.jsonObject(with: Data(contentsOf: pipeline.appendingPathComponent("model_index.json"))) as! [String: Any]
        index["image_encoder"] = ["transformers", "CLIPVisionModelWithProjection"]
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        try! JSONSerialization.data(withJSONObject: index).write(to: dir.appendingPathComponent("model_index.json"))
        return dir
    }
}
