import Foundation
import NestEngine
import NestIO
import NestModels
import XCTest

/// A component folder copied from the fixtures into a temporary folder, with its
/// config.json rewritten by `edit`; removed by `cleanup`.
func componentCopy(_ flavour: String, _ name: String, weightsFrom: (String, String)? = nil,
                   edit: (inout [String: Any]) -> Void) throws -> (url: URL, cleanup: () -> Void) {
    let fm = FileManager.default
    let folder = fm.temporaryDirectory.appendingPathComponent("nest-config-\(UUID().uuidString)")
    try fm.createDirectory(at: folder, withIntermediateDirectories: true)
    let source = ModelFixtures.component(flavour, name)
    let weightsFolder = weightsFrom.map { ModelFixtures.component($0.0, $0.1) } ?? source
    for file in try fm.contentsOfDirectory(atPath: weightsFolder.path) where file.hasSuffix(".safetensors") {
        try fm.copyItem(at: weightsFolder.appendingPathComponent(file), to: folder.appendingPathComponent(file))
    }
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
    edit(&config)
    try writeConfig(config, to: folder.appendingPathComponent("config.json"))
    return (folder, { try? fm.removeItem(at: folder) })
}

/// JSON with "__INF__" strings written as 1e999, a number no float can hold.
func writeConfig(_ config: [String: Any], to url: URL) throws {
    let text = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
    try Data(text.replacingOccurrences(of: "\"__INF__\"", with: "1e999").utf8).write(to: url)
}

func assertOneLine(_ error: Error, mentions needle: String, file: StaticString = #filePath, line: UInt = #line) {
    let message = String(describing: error)
    XCTAssertFalse(message.isEmpty, file: file, line: line)
    XCTAssertFalse(message.contains("\n"), "more than one line: \(message)", file: file, line: line)
    XCTAssertTrue(message.contains(needle), "\(message) does not mention \(needle)", file: file, line: line)
}

final class HostileConfigTests: XCTestCase {
    func testAbsurdSizesAreRefusedByName() throws {
        let cases: [(String, String, Any)] = [
            ("unet", "block_out_channels", [8, 1_000_000_000_000]), ("unet", "layers_per_block", 100_000),
            ("unet", "norm_eps", -1), ("unet", "sample_size", 1 << 40), ("vae", "latent_channels", 1 << 50),
            ("vae", "layers_per_block", 1 << 30), ("text_encoder", "vocab_size", Int.max),
            ("text_encoder", "num_hidden_layers", 1_000_000), ("image_encoder", "patch_size", 1),
            ("image_encoder", "hidden_size", 1 << 40), ("text_encoder", "layer_norm_eps", "__INF__"),
        ]
        for (component, key, value) in cases {
            let (url, cleanup) = try componentCopy("sd1", component) { $0[key] = value }
            defer { cleanup() }
            let (result, peak) = MemoryStats.measurePeak { Result { try load(component, url) } }
            XCTAssertThrowsError(try result.get(), "\(component) \(key)") { assertOneLine($0, mentions: url.path) }
            XCTAssertLessThan(peak, 8 << 20, "\(component) \(key)")
        }
    }

    /// Sizes within the bounds but not those of the weights: refused from the
    /// header's shapes before the model is allocated.
    func testMismatchedConfigFailsBeforeAllocating() throws {
        let (url, cleanup) = try componentCopy("sd1", "unet") { $0["block_out_channels"] = [512, 1024] }
        defer { cleanup() }
        let (result, peak) = MemoryStats.measurePeak { Result { try UNet2DConditionModel.load(folder: url) } }
        XCTAssertThrowsError(try result.get()) { assertOneLine($0, mentions: "conv_in.weight: checkpoint shape [8, 4, 3, 3], model expects [512, 4, 3, 3]") }
        XCTAssertLessThan(peak, 8 << 20, "the 1024-channel UNet was allocated")

        let (clip, cleanupCLIP) = try componentCopy("sd1", "text_encoder") { $0["intermediate_size"] = 4096 }
        defer { cleanupCLIP() }
        let clipPeak = MemoryStats.measurePeak { Result { try CLIPTextModel.load(folder: clip) } }
        XCTAssertThrowsError(try clipPeak.result.get()) { assertOneLine($0, mentions: "fc1.weight") }
        XCTAssertLessThan(clipPeak.peakBytes, 8 << 20)
    }

    func testMatchingConfigStillLoads() throws {
        for component in ["unet", "vae", "text_encoder", "image_encoder"] {
            let (url, cleanup) = try componentCopy("sd1", component) { $0["an_unknown_key"] = ["kept": true] }
            defer { cleanup() }
            if component == "vae" {
                // The VAE config refuses keys it does not know (they could change the network).
                XCTAssertThrowsError(try load(component, url)) { assertOneLine($0, mentions: "an_unknown_key") }
            } else {
                XCTAssertGreaterThan(try load(component, url).parameterCount, 0, component)
            }
        }
    }

    func testConfigAndWeightFIFOsDoNotBlock() throws {
        let fm = FileManager.default
        for (component, victim) in [("unet", "config.json"), ("vae", "diffusion_pytorch_model.safetensors"),
                                    ("text_encoder", "model.safetensors")] {
            let (url, cleanup) = try componentCopy("sd1", component) { _ in }
            defer { cleanup() }
            let path = url.appendingPathComponent(victim).path
            try fm.removeItem(atPath: path)
            XCTAssertEqual(mkfifo(path, 0o600), 0)
            let started = Date()
            XCTAssertThrowsError(try load(component, url)) { assertOneLine($0, mentions: "FIFO") }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        }
    }
}

/// Loads one component kind from `url` the way a pipeline does.
func load(_ component: String, _ url: URL) throws -> Module {
    switch component {
    case "unet": return try UNet2DConditionModel.load(folder: url)
    case "vae": return try AutoencoderKL.load(folder: url)
    case "text_encoder": return try CLIPTextModel.load(folder: url)
    default: return try CLIPVisionModel.load(folder: url)
    }
}

/// Configuration JSON nested thousands deep is refused by name before any parser
/// recurses into it; brackets inside strings and real configs' nesting pass.
final class DeepConfigNestingTests: XCTestCase {
    struct Anything: Decodable {}

    func testDeepNestingIsRefusedInOneLine() {
        for (open, close) in [("[", "]"), ("{\"d\":", "}")] {
            for depth in [65, 3000, 100_000] {
                let text = "{\"a\": " + String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth) + "}"
                XCTAssertThrowsError(try decodeConfig(Anything.self, data: Data(text.utf8), name: "deep.json")) { error in
                    assertOneLine(error, mentions: "deep.json: JSON nested more than 64 levels deep")
                }
            }
        }
        // Unclosed brackets count too (a truncated hostile file).
        XCTAssertTrue(jsonNestsDeeper(than: 64, Data(String(repeating: "[", count: 65).utf8)))
    }

    func testBracketsInStringsAndModestNestingPass() throws {
        let quoted = "\"" + String(repeating: "[{", count: 500) + "\\\"]" + "\""
        let text = "{\"a\": " + quoted + ", \"b\": " + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        XCTAssertFalse(jsonNestsDeeper(than: 64, Data(text.utf8)))
        _ = try decodeConfig(Anything.self, data: Data(text.utf8), name: "fine.json")
        XCTAssertTrue(jsonNestsDeeper(than: 64, Data(("{\"a\": " + String(repeating: "[", count: 64) + "]").utf8)))
    }
}
