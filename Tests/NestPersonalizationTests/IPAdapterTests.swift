import Foundation
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// IP-Adapter files in the original key layout against diffusers 0.42.1, which
/// loaded the same files with its own loader and ran its own processors
/// (tools/make_ipadapter_fixtures.py; the UNet and image encoder are copies of
/// the sd1 model fixtures).
@Suite struct IPAdapterTests {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("ipadapter")
    static let refs = try! SafeTensorsFile(path: root.appendingPathComponent("reference.safetensors").path)
    static let scale: Float = 0.7

    static func ref(_ name: String, nchw: Bool = false) -> Tensor {
        let t = try! refs.tensor(name)
        return nchw ? t.permuted([0, 2, 3, 1]) : t
    }
    static func unet() throws -> UNet2DConditionModel { try .load(folder: root.appendingPathComponent("unet")) }
    static func encoder() throws -> CLIPVisionModel { try .load(folder: root.appendingPathComponent("image_encoder")) }
    static func adapter(_ kind: String) throws -> IPAdapter {
        try IPAdapter.load(path: root.appendingPathComponent("ip_adapter_\(kind).safetensors"))
    }
    static func run(_ unet: UNet2DConditionModel) -> Tensor {
        unet(sample: ref("sample", nchw: true), timestep: [500], encoderHiddenStates: ref("context"))
    }

    /// max |a - b| / max |b|.
    static func relative(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.count == b.count, "comparing \(a.shape) with \(b.shape)")
        var scale: Float = 1e-6, worst: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b.data[i])); worst = max(worst, abs(a.data[i] - b.data[i])) }
        return worst / scale
    }

    /// Reference pixels → image features (uncond, cond) → tokens → UNet output with the
    /// adapter at 0.7, each compared with diffusers; then scale 0 and uninstall give
    /// the plain UNet bit for bit. "_two": two reference images for one prompt.
    @Test(arguments: ["plain", "plus", "plain_two", "plus_two"])
    func unetOutputMatchesDiffusers(name: String) throws {
        let kind = name.hasPrefix("plain") ? "plain" : "plus"
        let adapter = try Self.adapter(kind), unet = try Self.unet(), encoder = try Self.encoder()
        let pixels = Self.ref(name.hasSuffix("_two") ? "pixels_two" : "pixels_one", nchw: true)

        let features = try adapter.imageFeatures(pixels: pixels, encoder: encoder)
        let embeds = Self.ref("\(name).embeds")
        let embedsError = Self.relative(F.concat([features.uncond, features.cond], axis: 0), embeds)
        let tokens = try adapter.guidanceTokens(pixels: pixels, encoder: encoder)
        let tokensError = Self.relative(tokens, Self.ref("\(name).tokens"))
        let directTokensError = Self.relative(adapter.imageTokens(embeds), Self.ref("\(name).tokens"))

        let plain = Self.run(unet)
        try adapter.install(on: unet, tokens: tokens, scale: Self.scale)
        let out = Self.run(unet)
        let outError = Self.relative(out, Self.ref("\(name).out", nchw: true))
        print("IP-Adapter \(name): embeds \(embedsError), tokens \(tokensError) (from diffusers' embeds \(directTokensError)), "
              + "UNet output \(outError)")
        #expect(embedsError <= 1e-4)
        #expect(tokensError <= 1e-4 && directTokensError <= 1e-5)
        #expect(outError <= 1e-4)
        #expect(Self.relative(plain, out) > 0.1, "the adapter must visibly change the output")

        adapter.setScale(0, on: unet)
        let zero = Self.run(unet)
        #expect(zero.array == plain.array, "scale 0 is the plain UNet exactly")
        #expect(Self.relative(zero, Self.ref("\(name).out_scale0", nchw: true)) <= 1e-4)
        adapter.uninstall(from: unet)
        #expect(unet.attentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor })
        #expect(Self.run(unet).array == plain.array)
    }

    @Test func layoutsAreReadAsDiffusersReadsThem() throws {
        let plain = try Self.adapter("plain").layout, plus = try Self.adapter("plus").layout
        #expect(plain.projection == .plain(imageEmbedDim: 24, tokens: 4))
        #expect(plain.crossAttentionDim == 16 && plain.tokens == 4)
        #expect(plain.layers.map(\.number) == [1, 3, 5, 7, 9, 11])
        #expect(plain.layers.map(\.width) == [8, 8, 8, 8, 8, 16], "down 0, up 1 (8 wide), then the mid block (16)")
        #expect(plus.projection == .plus(Resampler.Config(embeddingDim: 32, width: 16, outputDim: 16, depth: 4, heads: 1,
                                                           headDim: 64, queries: 6, ffMult: 4)))
        #expect(plus.tokens == 6)
    }

    /// Names and shapes only, as in the published SD 1.5 files.
    struct ShapesOnly: WeightSource {
        var shapes: [String: [Int]]
        var tensorNames: [String] { shapes.keys.sorted() }
        func shape(of name: String) -> [Int]? { shapes[name] }
        func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
            throw IPAdapterError("no data")
        }
    }

    /// ip-adapter_sd15 (ViT-H image_embeds 1024 → 4 tokens of 768) and ip-adapter-plus_sd15
    /// (16 queries, width 768, to_q 768 rows → 12 heads of 64, 4 layers, ff 3072) key layouts.
    @Test func publishedSD15LayoutsAreInferred() throws {
        var ip: [String: [Int]] = [:]
        let widths = [320, 320, 640, 640, 1280, 1280] + [1280, 1280, 1280, 640, 640, 640, 320, 320, 320] + [1280]
        for (k, width) in widths.enumerated() {
            ip["ip_adapter.\(2 * k + 1).to_k_ip.weight"] = [width, 768]
            ip["ip_adapter.\(2 * k + 1).to_v_ip.weight"] = [width, 768]
        }
        let plain = try IPAdapterLayout.read(ShapesOnly(shapes: ip.merging([
            "image_proj.proj.weight": [3072, 1024], "image_proj.proj.bias": [3072],
            "image_proj.norm.weight": [768], "image_proj.norm.bias": [768]]) { a, _ in a }))
        #expect(plain.projection == .plain(imageEmbedDim: 1024, tokens: 4) && plain.crossAttentionDim == 768)
        #expect(plain.layers.map(\.number) == Array(stride(from: 1, through: 31, by: 2)))
        #expect(plain.layers.map(\.width) == widths)

        var plus = ip.merging(["image_proj.latents": [1, 16, 768], "image_proj.proj_in.weight": [768, 1280],
                               "image_proj.proj_in.bias": [768], "image_proj.proj_out.weight": [768, 768],
                               "image_proj.proj_out.bias": [768], "image_proj.norm_out.weight": [768],
                               "image_proj.norm_out.bias": [768]]) { a, _ in a }
        for i in 0..<4 {
            let p = "image_proj.layers.\(i)."
            for norm in ["0.norm1", "0.norm2", "1.0"] { plus[p + norm + ".weight"] = [768]; plus[p + norm + ".bias"] = [768] }
            plus[p + "0.to_q.weight"] = [768, 768]; plus[p + "0.to_kv.weight"] = [1536, 768]; plus[p + "0.to_out.weight"] = [768, 768]
            plus[p + "1.1.weight"] = [3072, 768]; plus[p + "1.3.weight"] = [768, 3072]
        }
        let layout = try IPAdapterLayout.read(ShapesOnly(shapes: plus))
        #expect(layout.projection == .plus(Resampler.Config(embeddingDim: 1280, width: 768, outputDim: 768, depth: 4,
                                                             heads: 12, headDim: 64, queries: 16, ffMult: 4)))
        // Every name the model would load is one the file has (strict loading would accept it).
        #expect(Set(IPAdapter(layout: layout).namedParameters().map(\.path)) == Set(plus.keys))
    }

    /// The k-th decoupled cross-attention of the UNet reads ip_adapter.(2k+1).
    @Test func kthCrossAttentionReadsKey2kPlus1() throws {
        let adapter = try Self.adapter("plain"), unet = try Self.unet()
        let bindings = try adapter.bindings(for: unet)
        #expect(bindings.map(\.path) == unet.crossAttentionLayers.map(\.path))
        for (k, binding) in bindings.enumerated() { #expect(binding.weights === adapter.attentionWeights[2 * k + 1]) }
        #expect(bindings.last?.path == "mid_block.attentions.0.transformer_blocks.0.attn2.processor",
                "diffusers lists the mid block after the up blocks")
    }

    /// Numbering against what diffusers' loader read for each processor of the real
    /// SD 1.5 (16 cross-attentions ↔ 1…31) and SDXL base (70 ↔ 1…139) UNets.
    @Test(arguments: [("sd15", 16), ("sdxl_base", 70)])
    func numberingMatchesDiffusersForRealUNets(name: String, crossLayers: Int) throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("\(name)_ip_keys.txt"), encoding: .utf8)
        let rows = text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let expected = rows.filter { $0[1] != "-" }.map { ($0[0], Int($0[1])!) }
        let numbered = IPAdapterLayout.keyNumbers(attentionPaths: rows.map { $0[0] })
        #expect(numbered.map(\.path) == expected.map(\.0))
        #expect(numbered.map(\.number) == expected.map(\.1))
        #expect(numbered.map(\.number) == Array(stride(from: 1, through: 2 * crossLayers - 1, by: 2)))
    }
}

/// Files that do not fit, or are not plain/Plus IP-Adapters: one-line errors naming the key or layer.
@Suite struct IPAdapterErrorTests {
    static func tensors(_ kind: String) throws -> [String: Tensor] {
        let file = try SafeTensorsFile(path: IPAdapterTests.root.appendingPathComponent("ip_adapter_\(kind).safetensors").path)
        return Dictionary(uniqueKeysWithValues: try file.names.map { ($0, try file.tensor($0)) })
    }

    /// The error `body` throws, after checking it is one line and mentions every `needle`.
    func expectError(_ needles: [String], _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected an error mentioning \(needles)")
        } catch {
            let text = "\(error)"
            #expect(!text.contains("\n"), "one line: \(text)")
            for needle in needles { #expect(text.contains(needle), "\(text) should mention \(needle)") }
        }
    }

    func install(_ t: [String: Tensor]) throws {
        let adapter = try IPAdapter.load(source: TensorDictionary(t))
        try adapter.install(on: try IPAdapterTests.unet(), tokens: Tensor(zeros: [2, adapter.layout.tokens, adapter.crossAttentionDim]), scale: 1)
    }

    @Test func missingKeys() throws {
        var t = try Self.tensors("plain")
        t["ip_adapter.5.to_v_ip.weight"] = nil
        expectError(["ip_adapter.5.to_v_ip.weight", "missing"]) { _ = try IPAdapter.load(source: TensorDictionary(t)) }
        t = try Self.tensors("plain")
        t["ip_adapter.11.to_k_ip.weight"] = nil; t["ip_adapter.11.to_v_ip.weight"] = nil
        expectError(["ip_adapter.11.to_k_ip.weight", "mid_block.attentions.0.transformer_blocks.0.attn2"]) { try install(t) }
        t = try Self.tensors("plus")
        t["image_proj.layers.2.1.3.weight"] = nil
        expectError(["image_proj.layers.2.1.3.weight", "missing"]) { _ = try IPAdapter.load(source: TensorDictionary(t)) }
        expectError(["nowhere.safetensors"]) { _ = try IPAdapter.load(path: URL(fileURLWithPath: "/nowhere.safetensors")) }
    }

    @Test func widthsForAnotherBaseModel() throws {
        var t = try Self.tensors("plain")
        (t["ip_adapter.1.to_k_ip.weight"], t["ip_adapter.11.to_k_ip.weight"]) = (t["ip_adapter.11.to_k_ip.weight"], t["ip_adapter.1.to_k_ip.weight"])
        (t["ip_adapter.1.to_v_ip.weight"], t["ip_adapter.11.to_v_ip.weight"]) = (t["ip_adapter.11.to_v_ip.weight"], t["ip_adapter.1.to_v_ip.weight"])
        expectError(["ip_adapter.1.to_k_ip.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn2", "different base model"]) {
            try install(t)
        }
        // Tokens 12 wide (as if the base model's text width were 12).
        t = try Self.tensors("plain")
        t["image_proj.proj.weight"] = Tensor(zeros: [48, 24]); t["image_proj.proj.bias"] = Tensor(zeros: [48])
        t["image_proj.norm.weight"] = Tensor(zeros: [12]); t["image_proj.norm.bias"] = Tensor(zeros: [12])
        for (name, value) in t where name.hasPrefix("ip_adapter.") { t[name] = Tensor(zeros: [value.shape[0], 12]) }
        expectError(["12 wide", "16 wide", "different base model"]) { try install(t) }
        // One more cross-attention than this UNet has.
        t = try Self.tensors("plain")
        t["ip_adapter.13.to_k_ip.weight"] = Tensor(zeros: [8, 16]); t["ip_adapter.13.to_v_ip.weight"] = Tensor(zeros: [8, 16])
        expectError(["ip_adapter.13", "6 cross-attentions"]) { try install(t) }
        // to_v_ip disagreeing with to_k_ip.
        t = try Self.tensors("plain")
        t["ip_adapter.3.to_v_ip.weight"] = Tensor(zeros: [8, 15])
        expectError(["ip_adapter.3.to_k_ip.weight"]) { _ = try IPAdapter.load(source: TensorDictionary(t)) }
    }

    @Test func otherLayoutsAreRefusedByName() throws {
        let m = Tensor(zeros: [4, 4]), v = Tensor(zeros: [4])
        let ip = ["ip_adapter.1.to_k_ip.weight": m, "ip_adapter.1.to_v_ip.weight": m]
        let cases: [([String: Tensor], String)] = [
            (["image_proj.proj.0.weight": m, "image_proj.proj.3.weight": v], "Full Face"),
            (["image_proj.perceiver_resampler.proj_in.weight": m, "image_proj.proj.0.weight": m], "FaceID Plus"),
            (["image_proj.proj.0.weight": m, "image_proj.proj.2.weight": m, "image_proj.norm.weight": v], "FaceID"),
            (["image_proj.mystery.weight": m], "unrecognized image_proj layout"),
            (["image_proj.proj.weight": m, "image_proj.norm.weight": v, "text_proj.weight": m], "'text_proj.weight'"),
            (["image_proj.proj.weight": m, "image_proj.norm.weight": v, "ip_adapter.1.to_k_lora.down.weight": m],
             "'ip_adapter.1.to_k_lora.down.weight'"),
        ]
        for (extra, needle) in cases {
            expectError([needle]) { _ = try IPAdapter.load(source: TensorDictionary(ip.merging(extra) { a, _ in a })) }
        }
        var t = try Self.tensors("plus")
        t["image_proj.layers.0.0.to_q.weight"] = Tensor(zeros: [40, 16])
        expectError(["image_proj.layers.0.0.to_q.weight", "64"]) { _ = try IPAdapter.load(source: TensorDictionary(t)) }
    }
}
