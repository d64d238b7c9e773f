import Foundation
import NestEngine
import NestIO

/// A CLIP checkpoint in either of the layouts transformers writes.
///
/// transformers 4 (and every hub checkpoint) names a tower's tensors under
/// `text_model.` / `vision_model.`; transformers 5 saves a bare CLIPTextModel or
/// CLIPVisionModel without that prefix (it strips it when loading old files),
/// while the WithProjection classes keep it. Both load here, strictly.
struct CLIPCheckpoint {
    let folder: URL
    let variant: String?
    let names: Set<String>

    init(folder: URL, variant: String?) throws {
        self.folder = folder
        self.variant = variant
        let url = try WeightFiles.locate(in: folder, variant: variant)
        names = Set(try SafeTensorsCollection(path: url.path).names)
    }

    func has(_ name: String) -> Bool { names.contains(name) }

    /// Loads `model` when the checkpoint uses the `prefix.` layout, else only its `tower`
    /// (which then must be all there is: a projection needs the prefixed layout).
    func load(_ model: Module, tower: Module, prefix: String, projection: Module?) throws {
        // Older files also carry the `position_ids` buffer (0..<n); positions are implicit here.
        let isBuffer: (String) -> Bool = { $0.hasSuffix("embeddings.position_ids") }
        if names.contains(where: { $0.hasPrefix(prefix + ".") }) {
            try WeightFiles.load(model, from: folder, variant: variant, ignoring: isBuffer)
            return
        }
        if projection != nil {
            throw ModelConfigError("\(folder.path): a projection was asked for, but the checkpoint is a "
                                   + "model without one (no '\(prefix).' tensors)")
        }
        try WeightFiles.load(tower, from: folder, variant: variant, ignoring: isBuffer)
    }
}
