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
    let url: URL
    let source: FilteredSource
    let names: Set<String>

    init(folder: URL, variant: String?) throws {
        self.folder = folder
        // Older files also carry the `position_ids` buffer (0..<n); positions are implicit here.
        (url, source) = try WeightFiles.open(folder, variant: variant) { $0.hasSuffix("embeddings.position_ids") }
        names = Set(source.tensorNames)
    }

    func has(_ name: String) -> Bool { names.contains(name) }

    /// Builds the model with `make` once its shapes match the checkpoint (see
    /// `Module.build(checkedAgainst:)`), and loads it when the checkpoint uses
    /// the `prefix.` layout, else only its `tower` (which then must be all
    /// there is: a projection needs the prefixed layout).
    /// What `build` would hold with each precision, from the header alone.
    func loadingCost<M: Module>(prefix: String, tower: @escaping (M) -> Module,
                                _ make: () -> M) -> [WeightPrecision: LoadingCost] {
        let whole = names.contains(where: { $0.hasPrefix(prefix + ".") })
        let model = ParameterShapes.plan(make)
        let part = whole ? model : tower(model)
        return Dictionary(uniqueKeysWithValues: WeightPrecision.allCases.map { ($0, part.loadingCost(from: source, precision: $0)) })
    }

    func build<M: Module>(prefix: String, withProjection: Bool, tower: @escaping (M) -> Module,
                          options: WeightLoadOptions = WeightLoadOptions(), _ make: () -> M) throws -> M {
        let whole = names.contains(where: { $0.hasPrefix(prefix + ".") })
        if !whole && withProjection {
            throw ModelConfigError("\(folder.path): a projection was asked for, but the checkpoint is a "
                                   + "model without one (no '\(prefix).' tensors)")
        }
        let part: (M) -> Module = whole ? { $0 } : tower
        return try WeightFiles.naming(url) {
            let model = try Module.build(checkedAgainst: source, part: part, make)
            try part(model).load(from: source, options: options)
            // Parameters outside the loaded part would own no values.
            let unloaded = model.unloadedParameters
            if !unloaded.isEmpty {
                throw WeightLoadingError(weightProblemSummary(unloaded.map { "\($0): missing from checkpoint" }))
            }
            return model
        }
    }
}
