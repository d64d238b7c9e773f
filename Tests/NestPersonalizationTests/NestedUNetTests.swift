import Foundation
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// Nested Attention bound to whole UNets (NestedAttentionBinding) against a
/// diffusers reference whose processor uses the paper's direct per-query
/// form (tools/make_nested_fixtures.py), plus properties of the read-out.
@Suite struct NestedUNetTests {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("nested")
    static let cases = ["single", "two", "lambda", "weight", "mixed"]

    /// One flavour's tiny UNet, its two adapters and the reference inputs.
    struct Fixture {
        let unet: UNet2DConditionModel
        let refs: SafeTensorsFile
        let adapters: [String: PersonalizationAdapter]
        let context: Tensor
        let sample: Tensor
        let added: (textEmbeds: Tensor, timeIds: Tensor)?

        init(_ flavour: String) throws {
            let folder = NestedUNetTests.root.appendingPathComponent(flavour)
            unet = try UNet2DConditionModel.load(folder: folder.appendingPathComponent("unet"))
            refs = try SafeTensorsFile(path: folder.appendingPathComponent("reference.safetensors").path)
            var adapters: [String: PersonalizationAdapter] = [:]
            for name in ["adapter_a", "adapter_b"] {
                adapters[name] = try PersonalizationAdapter.load(path: folder.appendingPathComponent(name).path)
            }
            self.adapters = adapters
            sample = try refs.tensor("sample").permuted([0, 2, 3, 1])
            context = try refs.tensor("encoder_hidden_states")
            added = refs.names.contains("text_embeds") ? (try refs.tensor("text_embeds"), try refs.tensor("time_ids")) : nil
        }

        func run() -> Tensor { unet(sample: sample, timestep: [500], encoderHiddenStates: context, added: added) }

        func reference(_ name: String) throws -> Tensor { try refs.tensor(name).permuted([0, 2, 3, 1]) }

        func tokens(_ adapter: String) throws -> Tensor { adapters[adapter]!.encode(features: try refs.tensor("\(adapter).features")) }

        /// The case's subjects as the generator wrote them (index -1: no token; λ 0: none).
        func subjects(_ name: String) throws -> [NestedBindingSubject] {
            try ["adapter_a", "adapter_b"].filter { refs.names.contains("\(name).\($0).index") }.map { adapter in
                let index = try refs.tensor("\(name).\(adapter).index").array.map { $0 < 0 ? nil : Int($0) }
                let lambda = try refs.tensor("\(name).\(adapter).lambda").item
                let options = NestedAttentionOptions(valueNormalization: lambda == 0 ? nil : lambda,
                                                     tokenWeight: try refs.tensor("\(name).\(adapter).weight").item)
                return NestedBindingSubject(adapter: adapters[adapter]!, tokens: try tokens(adapter), tokenIndex: index, options: options)
            }
        }
    }

    /// Every case of one flavour on one loaded UNet (loading and the base run are shared).
    @Test(arguments: ["sd1", "sdxl"])
    func matchesDirectFormDiffusersProcessor(flavour: String) throws {
        let f = try Fixture(flavour)
        let base = f.run()
        #expect(relativeError(base, try f.reference("out_base")) <= 1e-4)
        for adapter in ["adapter_a", "adapter_b"] {
            let e = relativeError(try f.tokens(adapter), try f.refs.tensor("\(adapter).tokens"))
            #expect(e <= 1e-5, "\(flavour) \(adapter): encoder tokens differ by \(e)")
        }
        for name in Self.cases {
            let binding = try NestedAttentionBinding.install(on: f.unet, subjects: try f.subjects(name))
            let out = f.run()
            binding.uninstall()
            let expected = try f.reference("out_\(name)")
            let error = relativeError(out, expected), effect = relativeError(base, expected)
            let cond = relativeError(out.slice(axis: 0, 1..<2), expected.slice(axis: 0, 1..<2))
            print("nested UNet \(flavour) \(name): max relative error \(error), conditional item \(cond) (the subject moves the output by \(effect))")
            #expect(error <= 1e-4, "\(flavour) \(name): \(error)")
            #expect(effect >= 1e-3, "\(name): the case must change the output far beyond the tolerance")
        }
        #expect(f.unet.crossAttentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor })
        #expect(f.run().array == base.array, "uninstall restores the plain UNet")
    }

    /// Adapter B lists every second layer, reversed, by bare module path: its `layers.N` follow its own list.
    @Test func bindsEachAdapterToItsOwnLayersInUNetOrder() throws {
        let f = try Fixture("sdxl")
        let binding = try NestedAttentionBinding.install(on: f.unet, subjects: try f.subjects("two"))
        defer { binding.uninstall() }
        let all = f.unet.crossAttentionLayers.map(\.path)
        #expect(binding.layers.map(\.path) == all)
        #expect(binding.paths(of: "<cat>") == all)
        #expect(binding.paths(of: "<dog>") == all.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))
        let mid = try #require(binding.layers.last { $0.path.hasPrefix("mid_block") })
        #expect(mid.placeholderTokens == ["<cat>", "<dog>"] && mid.processor.subjects.count == 2)
    }

    /// K̃ and Ṽ are projected at install: changing the adapter afterwards changes nothing.
    @Test func nestedKeysAndValuesAreProjectedOncePerBinding() throws {
        let f = try Fixture("sd1")
        let binding = try NestedAttentionBinding.install(on: f.unet, subjects: try f.subjects("single"))
        let first = f.run()
        for layer in f.adapters["adapter_a"]!.layers.items { layer.to_v.weight.assign(Tensor(zeros: layer.to_v.weight.shape)) }
        #expect(f.run().array == first.array)
        binding.uninstall()
    }

    /// (a) Ṽ rows all equal to V_s make v*ᵢ = V_s for every query: the layer is plain cross-attention.
    /// Built through weights: E = the subject token's text embedding repeated, W̃_V = the layer's own to_v.
    @Test(arguments: [Float?.none, 1])
    func nestedValuesEqualToTheTokenValueGiveTheBaseUNet(lambda: Float?) throws {
        let f = try Fixture("sd1")
        let base = f.run()
        let s = 7, m = 3, width = f.context.shape[2]
        var config = f.adapters["adapter_a"]!.config
        config.resampler.outputDim = width
        let adapter = PersonalizationAdapter(config: config)
        for (projection, (_, layer)) in zip(adapter.layers.items, f.unet.crossAttentionLayers) {
            projection.to_v.weight.assign(layer.to_v.weight)
        }
        let row = f.context.slice(axis: 0, 1..<2).slice(axis: 1, s..<(s + 1))
        let e = F.concat(Array(repeating: row, count: m), axis: 1)
        let binding = try NestedAttentionBinding.install(on: f.unet, subjects: [
            NestedBindingSubject(adapter: adapter, tokens: e, tokenIndex: [nil, s], options: .init(valueNormalization: lambda)),
        ])
        let error = relativeError(f.run(), base)
        print("nested UNet with v* = V_s (λ \(String(describing: lambda))): relative difference from base \(error)")
        #expect(error <= 1e-5)
        binding.uninstall()
    }

    /// (a) at the read-out level, with two subjects at different tokens per item.
    @Test func nestedValuesEqualToTheTokenValueGivePlainAttention() {
        let (b, n, t, m, heads, d) = (2, 9, 6, 4, 2, 3)
        let q = Tensor.randn([b, n, heads * d], seed: 1), k = Tensor.randn([b, t, heads * d], seed: 2)
        let v = Tensor.randn([b, t, heads * d], seed: 3)
        func repeatedValue(_ index: [Int]) -> Tensor {
            F.concat((0..<b).map { item in
                F.concat(Array(repeating: v.slice(axis: 0, item..<(item + 1)).slice(axis: 1, index[item]..<(index[item] + 1)), count: m), axis: 1)
            }, axis: 0)
        }
        let subjects = [
            NestedSubject(tokenIndex: [1, 4], keys: Tensor.randn([b, m, heads * d], seed: 4), values: repeatedValue([1, 4])),
            NestedSubject(tokenIndex: [3, 0], keys: Tensor.randn([1, m, heads * d], seed: 5), values: repeatedValue([3, 0]),
                          options: .init(valueNormalization: 1)),
        ]
        let out = nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects)
        let error = relativeError(out, F.attention(query: q, key: k, value: v, heads: heads))
        #expect(error <= 1e-6, "\(error)")
    }

    /// (b) No placeholder in any prompt: bit-for-bit the base UNet, whatever the options.
    @Test(arguments: ["sd1", "sdxl"])
    func withoutThePlaceholderTheUNetIsUnchangedBitwise(flavour: String) throws {
        let f = try Fixture(flavour)
        let base = f.run()
        let subjects = try f.subjects("two").map { subject in
            var s = subject
            s.tokenIndex = [nil, nil]
            s.options = .init(valueNormalization: 2, tokenWeight: 3)
            return s
        }
        let binding = try NestedAttentionBinding.install(on: f.unet, subjects: subjects)
        #expect(f.run().array == base.array)
        binding.uninstall()
    }

    /// (c) The residual form against the per-query formula, by loops in Double.
    @Test func residualFormEqualsThePerQueryFormula() {
        let (b, n, t, m, heads, d) = (2, 5, 7, 3, 2, 4)
        let q = Tensor.randn([b, n, heads * d], seed: 11), k = Tensor.randn([b, t, heads * d], seed: 12)
        let v = Tensor.randn([b, t, heads * d], seed: 13)
        let subjects = [
            NestedSubject(tokenIndex: [nil, 2], keys: Tensor.randn([1, m, heads * d], seed: 14),
                          values: Tensor.randn([1, m, heads * d], seed: 15), options: .init(valueNormalization: 1.7)),
            NestedSubject(tokenIndex: [5, 0], keys: Tensor.randn([b, m, heads * d], seed: 16),
                          values: Tensor.randn([b, m, heads * d], seed: 17), options: .init(tokenWeight: 2.5)),
            NestedSubject(tokenIndex: [1, nil], keys: Tensor.randn([1, m, heads * d], seed: 18),
                          values: Tensor.randn([1, m, heads * d], seed: 19)),
        ]
        let options = NestedAttentionOptions(tokenWeight: 0.5)  // the third subject's
        let out = nestedCrossAttention(query: q, key: k, value: v, heads: heads, subjects: subjects, options: options)
        let expected = perQueryNestedAttention(q: q, k: k, v: v, heads: heads, subjects: subjects, options: options)
        let error = relativeError(out, Tensor(expected.map(Float.init), shape: out.shape))
        print("residual vs per-query loops: max relative error \(error)")
        #expect(error <= 1e-5)
    }

    /// (d) Adapters for the published SD 1.5 / SDXL base layouts bind 16 / 70 layers in attn_processors order.
    /// Widths are shrunk (paths, counts and order depend on the block structure only).
    @Test(arguments: [("sd15", 16), ("sdxl_base", 70)])
    func realConfigAdaptersBindEveryCrossAttentionLayer(name: String, count: Int) throws {
        let folder = Self.root.appendingPathComponent("real_configs/\(name)")
        let unet = UNet2DConditionModel(config: try structuralMiniature(folder.appendingPathComponent("config.json")), seed: 3)
        let expected = try String(contentsOf: folder.appendingPathComponent("attn_processors.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init).filter { $0.hasSuffix(".attn2.processor") }
        let config = AdapterConfig(kind: .nested, placeholderToken: "<x>", classWord: "x",
                                   imageEncoder: .init(hiddenSize: 8, imageSize: 224),
                                   resampler: .init(embeddingDim: 8, width: 8, outputDim: 4, depth: 1,
                                                    heads: 1, headDim: 8, queries: 2, ffMult: 1),
                                   layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers))
        let adapter = PersonalizationAdapter(config: config, seed: 5)
        let e = adapter.encode(features: Tensor.randn([1, 3, 8], seed: 6))
        let binding = try NestedAttentionBinding.install(on: unet, subjects: [.init(adapter: adapter, tokens: e, tokenIndex: [nil, 2])])
        #expect(binding.layers.count == count)
        #expect(binding.layers.map(\.path) == expected)
        #expect(config.layers.map(\.path) == expected)
        // And it runs on that topology: the subject changes the output; uninstall brings the base back.
        let sample = Tensor.randn([2, 8, 8, 4], seed: 7), context = Tensor.randn([2, 5, 4], seed: 8)
        let added = name == "sdxl_base" ? (textEmbeds: Tensor.randn([2, 4], seed: 9), timeIds: Tensor(repeating: 64, shape: [2, 6])) : nil
        let nested = unet(sample: sample, timestep: [300], encoderHiddenStates: context, added: added)
        binding.uninstall()
        let base = unet(sample: sample, timestep: [300], encoderHiddenStates: context, added: added)
        #expect(nested.slice(axis: 0, 0..<1).array == base.slice(axis: 0, 0..<1).array, "the unconditional item is untouched")
        #expect(relativeError(nested, base) > 1e-4)
    }

    @Test func refusedBindingsNameTheProblemAndLeaveTheUNetAlone() throws {
        let sd1 = try Fixture("sd1"), xl = try Fixture("sdxl")
        let a = try sd1.subjects("single")[0]
        func refusal(_ subjects: [NestedBindingSubject], on unet: UNet2DConditionModel) -> String {
            let before = unet.crossAttentionLayers.map { ObjectIdentifier($0.layer.processor) }
            do { _ = try NestedAttentionBinding.install(on: unet, subjects: subjects); return "installed" } catch {
                #expect(unet.crossAttentionLayers.map { ObjectIdentifier($0.layer.processor) } == before)
                return "\(error)"
            }
        }
        let missing = refusal([a], on: xl.unet)
        #expect(missing.contains("no cross-attention layer 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor'"), "\(missing)")
        var narrow = a.adapter.config
        narrow.layers[2].width = 12
        let wide = refusal([NestedBindingSubject(adapter: PersonalizationAdapter(config: narrow), tokens: a.tokens, tokenIndex: [nil, 5])], on: sd1.unet)
        #expect(wide.contains("expects 12") && wide.contains("different base model"), "\(wide)")
        let twice = refusal([a, NestedBindingSubject(adapter: a.adapter, tokens: a.tokens, tokenIndex: [nil, 9])], on: sd1.unet)
        #expect(twice.contains("both claim the placeholder token '<cat>'"), "\(twice)")
        var b = try sd1.subjects("two")[1]
        b.tokenIndex = [nil, 5]
        let sameToken = refusal([a, b], on: sd1.unet)
        #expect(sameToken.contains("'<cat>' and '<dog>' both claim token 5 of batch item 1"), "\(sameToken)")
        for message in [missing, wide, twice, sameToken] { #expect(!message.contains("\n")) }

        let binding = try NestedAttentionBinding.install(on: sd1.unet, subjects: [a])
        let again = refusal([b], on: sd1.unet)
        #expect(again.contains("already has a NestedAttentionProcessor"), "\(again)")
        binding.uninstall()
    }
}

extension NestedUNetTests {
    /// max |a - b| / max |b|.
    static func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.count == b.count, "comparing \(a.shape) with \(b.shape)")
        var scale: Float = 1e-6, worst: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b.data[i])); worst = max(worst, abs(a.data[i] - b.data[i])) }
        return worst / scale
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Float { Self.relativeError(a, b) }

    /// outᵢ = Σ_{t not a subject token} aᵢₜ·V_t + Σⱼ aᵢₛⱼ·v*ᵢⱼ, one query and head at a time, in Double.
    func perQueryNestedAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, subjects: [NestedSubject],
                                 options: NestedAttentionOptions) -> [Double] {
        let (b, n, width, t) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        let d = width / heads, scale = 1 / Double(d).squareRoot()
        func row(_ x: Tensor, _ item: Int, _ r: Int, _ h: Int) -> [Double] {
            let batch = x.shape[0] == 1 ? 0 : item, rows = x.shape[1]
            return (0..<d).map { Double(x.data[(batch * rows + r) * width + h * d + $0]) }
        }
        func dot(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } }
        func softmax(_ x: [Double]) -> [Double] {
            let top = x.max()!, e = x.map { Foundation.exp($0 - top) }, total = e.reduce(0, +)
            return e.map { $0 / total }
        }
        var out = [Double](repeating: 0, count: b * n * width)
        for item in 0..<b {
            let here = subjects.filter { $0.tokenIndex[item] != nil }
            for i in 0..<n {
                for h in 0..<heads {
                    let qi = row(q, item, i, h)
                    let logits = (0..<t).map { token -> Double in
                        let owner = here.first { $0.tokenIndex[item] == token }
                        let w = Double((owner?.options ?? options).tokenWeight)
                        return dot(qi, row(k, item, token, h)) * scale + (owner == nil ? 0 : Foundation.log(w))
                    }
                    let a = softmax(logits)
                    var o = [Double](repeating: 0, count: d)
                    for token in 0..<t where !here.contains(where: { $0.tokenIndex[item] == token }) {
                        for c in 0..<d { o[c] += a[token] * row(v, item, token, h)[c] }
                    }
                    for subject in here {
                        let s = subject.tokenIndex[item]!, m = subject.keys.shape[1]
                        let p = softmax((0..<m).map { dot(qi, row(subject.keys, item, $0, h)) * scale })
                        var vStar = [Double](repeating: 0, count: d)
                        for j in 0..<m { for c in 0..<d { vStar[c] += p[j] * row(subject.values, item, j, h)[c] } }
                        if let lambda = (subject.options ?? options).valueNormalization {
                            let target = Double(lambda) * dot(row(v, item, s, h), row(v, item, s, h)).squareRoot()
                            let norm = dot(vStar, vStar).squareRoot()
                            vStar = vStar.map { $0 / norm * target }
                        }
                        for c in 0..<d { o[c] += a[s] * vStar[c] }
                    }
                    for c in 0..<d { out[(item * n + i) * width + h * d + c] = o[c] }
                }
            }
        }
        return out
    }

    /// A published config with widths shrunk by a common factor, one head per block and tiny
    /// text/time widths; block types and every layer count stay as published.
    func structuralMiniature(_ url: URL) throws -> UNet2DConditionConfig {
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let channels = cfg["block_out_channels"] as! [Int]
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let unit = channels.reduce(channels[0], gcd)
        cfg["block_out_channels"] = channels.map { 2 * $0 / unit }
        cfg["norm_num_groups"] = 2
        cfg["attention_head_dim"] = (cfg["attention_head_dim"] is [Int]) ? channels.map { _ in 1 } : 1
        cfg["cross_attention_dim"] = 4
        if cfg["addition_embed_type"] as? String == "text_time" {
            cfg["addition_time_embed_dim"] = 2
            cfg["projection_class_embeddings_input_dim"] = 6 * 2 + 4
        }
        return try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: cfg))
    }
}
