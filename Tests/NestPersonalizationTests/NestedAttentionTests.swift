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

    /// Whether the case's subject j adds v* to its token's value ("nested_value": "add").
    func adds(_ name: String, _ j: Int) throws -> Bool { try Self.file.tensor("\(name).adds\(j)").array == [1] }

    func relative(_ a: Tensor, _ b: Tensor) -> Float {
        var scale: Float = 1e-6, worst: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b.data[i])); worst = max(worst, abs(a.data[i] - b.data[i])) }
        return worst / scale
    }

    @Test(arguments: [
        ("single", 2, 1, Float(1), Float?.none), ("uncond_branch", 2, 1, 1, nil), ("two_subjects", 3, 2, 1, nil),
        ("weighted", 2, 1, 2.5, nil), ("normalized", 2, 1, 1, 2.0), ("shared_keys", 2, 1, 1, nil),
        ("added", 2, 1, 1, nil), ("added_mixed", 3, 2, 2.0, nil), ("added_normalized", 2, 1, 1, 1.5),
    ])
    func matchesDirectFormula(name: String, heads: Int, subjectCount: Int, weight: Float, lambda: Float?) throws {
        let q = tensor("\(name).q"), k = tensor("\(name).k"), v = tensor("\(name).v")
        var subjects: [NestedSubject] = []
        var nestedLeaves: [(String, Tensor)] = []
        for j in 0..<subjectCount {
            let index = try Self.file.tensor("\(name).index\(j)").array.map { $0 < 0 ? nil : Int($0) }
            let keys = tensor("\(name).keys\(j)"), values = tensor("\(name).values\(j)")
            subjects.append(NestedSubject(tokenIndex: index, keys: keys, values: values, addsValue: try adds(name, j)))
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
        ("added", 2, 1, 1, nil), ("added_mixed", 3, 2, 2.0, nil), ("added_normalized", 2, 1, 1, 1.5),
    ])
    func fusedInferenceMatchesDirectFormula(name: String, heads: Int, subjectCount: Int, weight: Float, lambda: Float?) throws {
        let subjects = try (0..<subjectCount).map { j in
            NestedSubject(tokenIndex: try Self.file.tensor("\(name).index\(j)").array.map { $0 < 0 ? nil : Int($0) },
                          keys: try Self.file.tensor("\(name).keys\(j)"), values: try Self.file.tensor("\(name).values\(j)"),
                          addsValue: try adds(name, j))
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
            NestedSubject(tokenIndex: [12, nil], keys: Tensor.randn([1, m, width], seed: 8), values: Tensor.randn([1, m, width], seed: 9),
                          options: .init(valueNormalization: 0.5), addsValue: true),
        ]
        let fused = Autograd.noGrad { nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects) }
        q.requiresGrad = true  // recording: the composed path
        let composed = nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects)
        #expect(relative(fused, composed.detached()) < 1e-5, "differs by \(relative(fused, composed.detached()))")
    }

    /// A subject that adds its value, with nested values at zero (how an adding
    /// adapter starts training), leaves the layer exactly as it was.
    @Test func addedZeroValuesArePlainAttention() {
        let q = Tensor.randn([2, 70, 16], seed: 1), k = Tensor.randn([2, 5, 16], seed: 2), v = Tensor.randn([2, 5, 16], seed: 3)
        let subject = NestedSubject(tokenIndex: [nil, 3], keys: Tensor.randn([1, 4, 16], seed: 4), values: Tensor(zeros: [1, 4, 16]),
                                    addsValue: true)
        let plain = F.attention(query: q, key: k, value: v, heads: 2)
        let fused = Autograd.noGrad { nestedCrossAttention(query: q, key: k, value: v, heads: 2, subjects: [subject]) }
        q.requiresGrad = true
        let composed = nestedCrossAttention(query: q, key: k, value: v, heads: 2, subjects: [subject])
        #expect(relative(fused, plain) < 1e-6 && relative(composed.detached(), plain) < 1e-6)
        // The replacing form with the same zero values is not the plain layer: it removes V_s.
        let replaced = Autograd.noGrad {
            nestedCrossAttention(query: q.detached(), key: k, value: v, heads: 2,
                                 subjects: [NestedSubject(tokenIndex: [nil, 3], keys: subject.keys, values: subject.values)])
        }
        #expect(relative(replaced, plain) > 1e-2)
    }

    @Test func withoutSubjectsItIsPlainAttention() {
        let q = Tensor.randn([2, 6, 8], seed: 1), k = Tensor.randn([2, 5, 8], seed: 2), v = Tensor.randn([2, 5, 8], seed: 3)
        let subject = NestedSubject(tokenIndex: [nil, nil], keys: Tensor.randn([2, 4, 8], seed: 4), values: Tensor.randn([2, 4, 8], seed: 5))
        let a = nestedCrossAttention(query: q, key: k, value: v, heads: 2, subjects: [subject])
        let b = F.attention(query: q, key: k, value: v, heads: 2)
        #expect(a.array == b.array)
    }
}
