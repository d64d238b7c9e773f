import Foundation
import NestEngine
import NestIO
import Testing

/// The tiny diffusers folders and reference outputs written by
/// tools/make_model_fixtures.py (flavours sd1, sd2, sdxl).
enum ModelFixtures {
    static let root: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func folder(_ flavour: String) -> URL { root.appendingPathComponent(flavour) }

    static func component(_ flavour: String, _ name: String) -> URL { folder(flavour).appendingPathComponent(name) }

    /// Reference tensors of one component module (`reference_<module>.safetensors`).
    static func references(_ flavour: String, _ module: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: folder(flavour).appendingPathComponent("reference_\(module).safetensors").path)
    }
}

extension SafeTensorsFile {
    /// A reference tensor; `nchw: true` converts PyTorch's [N, C, H, W] to the engine's [N, H, W, C].
    func reference(_ name: String, nchw: Bool = false) throws -> Tensor {
        let t = try tensor(name)
        return nchw ? t.permuted([0, 2, 3, 1]) : t
    }
}

/// max |a - b| / max(1e-6, max |b|): error relative to the output's scale.
func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "comparing \(a.shape) with \(b.shape)")
    var scale: Float = 1e-6, worst: Float = 0
    for i in 0..<b.count {
        scale = max(scale, abs(b.data[i]))
        worst = max(worst, abs(a.data[i] - b.data[i]))
    }
    return worst / scale
}
