import Foundation
import NestEngine
import NestIO
import NestPersonalization
import Testing

/// The residual-form implementation against the paper's direct formula in
/// PyTorch (tools/make_personalization_fixtures.py): outputs and the
/// gradients of every input, including the nested keys and values.
@Suite struct NestedAttentionTests {
    static let file = try! SafeTensorsFile(path: Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("nested_attention.safetensors").path)

    func tensor(_ name: String) -> Tensor {
        let t = try! Self.file.tensor(name)
        let leaf = t.copy()
        leaf.requiresGrad = true
        return leaf
    }

    func relative(_ a: Tensor, _ b: Tensor) -> Float {
        var scale: Float = 1e-6, worst: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b.data[i])); worst = max(worst, abs(a.data[i] - b.data[i])) }
        return worst / scale
    }

    @Test(arguments: [
        ("single", 2, 1, Float(1), Float?.none), ("uncond_branch", 2, 1, 1, nil), ("two_subjects", 3, 2, 1, nil),
        ("weighted", 2, 1, 2.5, nil), ("normalized", 2, 1, 1, 2.0), ("shared_keys", 2, 1, 1, nil),
    ])
    func matchesDirectFormula(name: String, heads: Int, subjectCount: Int, weight: Float, lambda: Float?) throws {
        let q = tensor("\(name).q"), k = tensor("\(name).k"), v = tensor("\(name).v")
        var subjects: [NestedSubject] = []
        var nestedLeaves: [(String, Tensor)] = []
        for j in 0..<subjectCount {
            let index = try Self.file.tensor("\(name).index\(j)").array.map { $0 < 0 ? nil : Int($0) }
            let keys = tensor("\(name).keys\(j)"), values = tensor("\(name).values\(j)")
            subjects.append(NestedSubject(tokenIndex: index, keys: keys, values: values))
            nestedLeaves += [("keys\(j)", keys), ("values\(j)", values)]
        }
        let out = nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects,
                                       options: .init(valueNormalization: lambda, tokenWeight: weight))
        let expected = try Self.file.tensor("\(name).out")
        #expect(relative(out, expected) < 1e-5, "\(name): output differs by \(relative(out, expected))")
        (out * (try Self.file.tensor("\(name).gout"))).sum().backward()
        for (key, leaf) in [("q", q), ("k", k), ("v", v)] + nestedLeaves {
            let reference = try Self.file.tensor("\(name).grad.\(key)")
            guard let grad = leaf.grad else { Issue.record("\(name): no gradient for \(key)"); continue }
            #expect(relative(grad, reference) < 1e-4, "\(name): gradient of \(key) differs by \(relative(grad, reference))")
        }
    }

    /// Without gradients the fused kernel runs; it must match the same direct formula.
    @Test(arguments: [
        ("single", 2, 1, Float(1), Float?.none), ("uncond_branch", 2, 1, 1, nil), ("two_subjects", 3, 2, 1, nil),
        ("weighted", 2, 1, 2.5, nil), ("normalized", 2, 1, 1, 2.0), ("shared_keys", 2, 1, 1, nil),
    ])
    func fusedInferenceMatchesDirectFormula(name: String, heads: Int, subjectCount: Int, weight: Float, lambda: Float?) throws {
        let subjects = try (0..<subjectCount).map { j in
            NestedSubject(tokenIndex: try Self.file.tensor("\(name).index\(j)").array.map { $0 < 0 ? nil : Int($0) },
                          keys: try Self.file.tensor("\(name).keys\(j)"), values: try Self.file.tensor("\(name).values\(j)"))
        }
        let out = try Autograd.noGrad {
            nestedCrossAttention(query: try Self.file.tensor("\(name).q"), key: try Self.file.tensor("\(name).k"),
                                 value: try Self.file.tensor("\(name).v"), heads: heads, subjects: subjects,
                                 options: .init(valueNormalization: lambda, tokenWeight: weight))
        }
        let expected = try Self.file.tensor("\(name).out")
        #expect(relative(out, expected) < 1e-5, "\(name): output differs by \(relative(out, expected))")
    }

    /// The fused kernel at a UNet-sized shape (several row blocks, per-subject
    /// options, shared and per-item keys) against the composed path.
    @Test func fusedKernelMatchesComposedPathAtScale() {
        let (b, n, t, m, heads, width) = (2, 300, 77, 16, 5, 320)
        let q = Tensor.randn([b, n, width], seed: 1), k = Tensor.randn([b, t, width], seed: 2), v = Tensor.randn([b, t, width], seed: 3)
        let subjects = [
            NestedSubject(tokenIndex: [nil, 5], keys: Tensor.randn([1, m, width], seed: 4), values: Tensor.randn([1, m, width], seed: 5),
                          options: .init(valueNormalization: 1.5, tokenWeight: 2)),
            NestedSubject(tokenIndex: [9, 7], keys: Tensor.randn([b, m + 3, width], seed: 6), values: Tensor.randn([b, m + 3, width], seed: 7)),
        ]
        let fused = Autograd.noGrad { nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects) }
        q.requiresGrad = true  // recording: the composed path
        let composed = nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects)
        #expect(relative(fused, composed.detached()) < 1e-5, "differs by \(relative(fused, composed.detached()))")
    }

    @Test func withoutSubjectsItIsPlainAttention() {
        let q = Tensor.randn([2, 6, 8], seed: 1), k = Tensor.randn([2, 5, 8], seed: 2), v = Tensor.randn([2, 5, 8], seed: 3)
        let subject = NestedSubject(tokenIndex: [nil, nil], keys: Tensor.randn([2, 4, 8], seed: 4), values: Tensor.randn([2, 4, 8], seed: 5))
        let a = nestedCrossAttention(query: q, key: k, value: v, heads: 2, subjects: [subject])
        let b = F.attention(query: q, key: k, value: v, heads: 2)
        #expect(a.array == b.array)
    }
}
