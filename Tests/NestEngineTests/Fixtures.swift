import Foundation
import NestEngine
import NestIO
import Testing

/// Reads the PyTorch reference fixtures written by tools/make_fixtures.py.
struct Fixtures {
    static let shared = Fixtures()
    let file: SafeTensorsFile

    init() {
        let url = Bundle.module.url(forResource: "ops", withExtension: "safetensors", subdirectory: "Fixtures")!
        file = try! SafeTensorsFile(path: url.path)
    }

    func has(_ name: String) -> Bool { file.tensors[name] != nil }

    func tensor(_ name: String) -> Tensor {
        let info = try! file.info(name)
        return Tensor(try! file.floats(name), shape: info.shape)
    }

}

/// Largest |a - b| relative to max(1, max |b|): scale-aware float32 closeness.
func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "compare: \(a.shape) vs \(b.shape)")
    var scale: Float = 1
    for i in 0..<b.count { scale = max(scale, abs(b.data[i])) }
    var worst: Float = 0
    for i in 0..<a.count { worst = max(worst, abs(a.data[i] - b.data[i])) }
    return worst / scale
}

/// Runs `f` on the case's inputs, checks the output against PyTorch, then
/// back-propagates the stored upstream gradient and checks every input's
/// gradient against PyTorch's.
func checkAgainstTorch(_ name: String, inputs names: [String], tolerance: Float = 1e-5,
                       _ f: ([Tensor]) -> Tensor) {
    let fx = Fixtures.shared
    let inputs = names.map { n -> Tensor in
        let leaf = fx.tensor("\(name).\(n)").detached().copy()
        leaf.requiresGrad = true
        return leaf
    }
    let out = f(inputs)
    let expected = fx.tensor("\(name).out")
    #expect(out.shape == expected.shape || out.count == expected.count, "\(name): shape \(out.shape) vs \(expected.shape)")
    let err = maxRelativeError(out, expected)
    #expect(err < tolerance, "\(name): output differs from PyTorch by \(err)")
    let gout = fx.tensor("\(name).gout").reshaped(out.shape)
    (out * gout).sum().backward()
    for (n, t) in zip(names, inputs) {
        guard fx.has("\(name).grad.\(n)") else { continue }
        guard let g = t.grad else { Issue.record("\(name): no gradient for \(n)"); continue }
        let e = maxRelativeError(g, fx.tensor("\(name).grad.\(n)"))
        #expect(e < tolerance * 10, "\(name): gradient of \(n) differs from PyTorch by \(e)")
    }
}
