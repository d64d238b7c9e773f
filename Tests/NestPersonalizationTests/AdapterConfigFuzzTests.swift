import Foundation
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import XCTest
import NestTestSupport

/// A tiny adapter pair written into a fresh folder, and the image encoder it reads from.
struct AdapterPair {
    static let encoder = try! JSONDecoder().decode(CLIPVisionConfig.self, from: Data("""
        {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 3, "num_attention_heads": 4,
         "image_size": 32, "patch_size": 8, "hidden_act": "gelu", "projection_dim": 24}
        """.utf8))
    let folder: URL
    var json: URL { folder.appendingPathComponent("subject.json") }
    var config: [String: Any] { try! JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any] }

    init(kind: AdapterConfig.Kind = .nested, tuned: Bool = false) throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-adapter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let config = AdapterConfig(kind: kind, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32, tuned: tuned),
                                   resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4, ffMult: 2),
                                   layers: [.init(path: "down_blocks.0.attentions.0.transformer_blocks.0.attn2", width: 8)],
                                   contextWidth: 16)
        let adapter = PersonalizationAdapter(config: config, seed: 3)
        if tuned { adapter.attachImageEncoder(CLIPVisionModel(config: Self.encoder, withProjection: false)) }
        try adapter.save(path: json.path)
    }

    func write(_ config: [String: Any]) throws {
        let text = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
        try Data(text.replacingOccurrences(of: "\"__INF__\"", with: "1e999").utf8).write(to: json)
    }

    func load() throws -> PersonalizationAdapter { try PersonalizationAdapter.load(path: json.path, imageEncoder: Self.encoder) }
    func remove() { try? FileManager.default.removeItem(at: folder) }
}

func assertOneLine(_ error: Error, mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
    let message = String(describing: error)
    XCTAssertFalse(message.isEmpty || message.contains("\n"), "not one line: \(message)", file: file, line: line)
    for needle in needles { XCTAssertTrue(message.contains(needle), "\(message) does not mention \(needle)", file: file, line: line) }
}

final class AdapterConfigTests: XCTestCase {
    /// A feature layer the encoder does not have used to crash inside the encoder at generation time.
    func testFeatureLayerOutsideTheEncoderIsRefusedAtLoad() throws {
        let pair = try AdapterPair()
        defer { pair.remove() }
        let original = pair.config
        for layer in [4, 5, -5, 1_000_000] {
            var config = original
            var encoder = config["image_encoder"] as! [String: Any]
            encoder["feature_layer"] = layer
            config["image_encoder"] = encoder
            try pair.write(config)
            XCTAssertThrowsError(try pair.load(), "\(layer)") {
                assertOneLine($0, mentions: [pair.json.path, "image_encoder.feature_layer", "\(layer)"])
                if abs(layer) < 100 { assertOneLine($0, mentions: ["-4...3"]) }
            }
        }
        for layer in [-4, -1, 0, 3] {
            var config = original
            var encoder = config["image_encoder"] as! [String: Any]
            encoder["feature_layer"] = layer
            config["image_encoder"] = encoder
            try pair.write(config)
            let adapter = try pair.load()
            let features = adapter.imageFeatures(pixels: Tensor(zeros: [1, 32, 32, 3]), shared: CLIPVisionModel(config: AdapterPair.encoder))
            XCTAssertEqual(features.shape, [1, 17, 32], "\(layer)")
        }
    }

    /// `nested_value`: absent reads as the paper's replacing form (files written before the
    /// option), "add" round-trips and reaches the bound layers, a baseline kind or an unknown
    /// mode is refused by name.
    func testNestedValueIsReadAndChecked() throws {
        let pair = try AdapterPair()
        defer { pair.remove() }
        XCTAssertNil(pair.config["nested_value"], "a replacing adapter's file stays as it was")
        XCTAssertFalse(try pair.load().config.addsNestedValue)
        var config = pair.config
        config["nested_value"] = "add"
        try pair.write(config)
        let adapter = try pair.load()
        XCTAssertEqual(adapter.config.nestedValue, .add)
        let layer = Attention(queryDim: 8, crossAttentionDim: 16, heads: 2, dimHead: 4)
        let binding = try NestedAttentionBinding.make(
            on: [(path: "down_blocks.0.attentions.0.transformer_blocks.0.attn2", layer: layer)],
            subjects: [NestedBindingSubject(adapter: adapter, tokens: Tensor.randn([1, 4, 16], seed: 1), tokenIndex: [2])])
        XCTAssertEqual(binding.layers.first?.processor.subjects.map(\.addsValue), [true])
        for (edit, needle) in [(["nested_value": "multiply"], "multiply"), (["nested_value": "add", "kind": "ip-adapter"], "nested_value")] {
            var bad = pair.config
            for (key, value) in edit { bad[key] = value }
            try pair.write(bad)
            XCTAssertThrowsError(try pair.load(), needle) { assertOneLine($0, mentions: [needle]) }
        }
    }

    func testOtherNumbersAreChecked() throws {
        let pair = try AdapterPair()
        defer { pair.remove() }
        let original = pair.config
        let edits: [(String, String, Any, String)] = [
            ("resampler", "depth", 1 << 40, "resampler.depth"), ("resampler", "heads", 0, "resampler.heads"),
            ("resampler", "queries", -3, "resampler.queries"), ("resampler", "embedding_dim", 64, "resampler.embedding_dim"),
            ("image_encoder", "hidden_size", 48, "image_encoder.hidden_size"), ("defaults", "scale", 1e39, "too large"),
            ("", "placeholder_token", "", "placeholder_token"), ("", "layers", [["path": "a", "width": -1]], "layers.0.width"),
            ("", "layers", [["path": "a", "width": 8], ["path": "a", "width": 8]], "layers.1.path"),
        ]
        for (section, key, value, needle) in edits {
            var config = original
            if section.isEmpty { config[key] = value } else {
                var inner = config[section] as! [String: Any]
                inner[key] = value
                config[section] = inner
            }
            try pair.write(config)
            let peak = MemoryStats.measurePeak { Result { try pair.load() } }
            XCTAssertThrowsError(try peak.result.get(), key) { assertOneLine($0, mentions: [pair.json.path, needle]) }
            XCTAssertLessThan(peak.peakBytes, 8 << 20, key)
        }
    }

    func testAdapterFIFOsDoNotBlock() throws {
        for victim in ["subject.json", "subject.safetensors"] {
            let pair = try AdapterPair()
            defer { pair.remove() }
            let path = pair.folder.appendingPathComponent(victim).path
            try FileManager.default.removeItem(atPath: path)
            XCTAssertEqual(mkfifo(path, 0o600), 0)
            let started = Date()
            XCTAssertThrowsError(try pair.load()) { assertOneLine($0, mentions: ["FIFO"]) }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        }
    }

    /// Mutated adapter configs (random types, ranges, unknown keys, feature
    /// layers): each load gives an adapter or a one-line error, never a crash
    /// or a large allocation, and writes nothing.
    func testMutatedAdapterConfigs() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["NEST_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xADA9)
        let scale = max(ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"].flatMap(Int.init) ?? 1, 1)
        var r = FuzzRandom(seed: seed)
        let pairs = [try AdapterPair(), try AdapterPair(kind: .singleToken), try AdapterPair(tuned: true)]
        defer { pairs.forEach { $0.remove() } }
        let originals = pairs.map(\.config)
        let count = 300 * scale
        var loaded = 0
        let started = Date()
        for index in 0..<count {
            let which = r.below(pairs.count)
            var config = originals[which]
            for _ in 0...r.below(3) { mutateAdapter(&config, &r) }
            let description = "seed \(seed) case \(index): \(String(decoding: (try? JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])) ?? Data(), as: UTF8.self))"
            try pairs[which].write(config)
            let (result, peak) = MemoryStats.measurePeak { Result { try pairs[which].load() } }
            switch result {
            case .success(let adapter):
                loaded += 1
                let layer = adapter.config.imageEncoder.featureLayer
                XCTAssertTrue((-4...3).contains(layer), "\(description): loaded with feature layer \(layer)")
            case .failure(let error):
                let message = String(describing: error)
                XCTAssertFalse(message.isEmpty || message.contains("\n"), "\(description): \(message)")
            }
            XCTAssertLessThan(peak, 16 << 20, description)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: pairs[which].folder.path).sorted(),
                           ["subject.json", "subject.safetensors"], description)
        }
        print("AdapterConfigTests: \(count) mutated adapter configs (seed \(seed)), \(loaded) loaded, in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }
}

/// Replaces, deletes or adds one entry, at the top level or inside a section.
func mutateAdapter(_ config: inout [String: Any], _ r: inout FuzzRandom) {
    let values: [Any] = [Int.max, Int.min, -1, 0, 1, 2, 3, 4, 5, -2, -5, 8, 16, 32, 1 << 33, 0.5, "__INF__", "", "nested",
                         "single-token", "ip-adapter", "<x>", "a b", NSNull(), true, [1, 2], ["k": 1],
                         [["path": "p", "width": 8]], [] as [Any]]
    let sections = ["", "image_encoder", "resampler", "defaults"]
    let section = r.pick(sections)
    var target = section.isEmpty ? config : (config[section] as? [String: Any] ?? [:])
    let keys = target.keys.sorted()
    switch r.below(5) {
    case 0: if !keys.isEmpty { target.removeValue(forKey: r.pick(keys)) }
    case 1: target["unknown_\(r.below(3))"] = r.pick(values)
    default: if !keys.isEmpty { target[r.pick(keys)] = r.pick(values) }
    }
    if section.isEmpty { config = target } else { config[section] = target }
}
