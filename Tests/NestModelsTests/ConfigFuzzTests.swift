import Foundation
import NestEngine
import NestIO
import NestModels
import XCTest
import NestTestSupport

/// How many cases a fuzz test runs: `base` × NEST_FUZZ_SCALE (default 1).
func fuzzCases(_ base: Int) -> Int {
    max(ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"].flatMap(Int.init) ?? 1, 1) * base
}

/// Values of every JSON type, sane and absurd, for replacing config entries.
func hostileValue(_ r: inout FuzzRandom) -> Any {
    switch r.below(14) {
    case 0: return Int.max
    case 1: return Int.min
    case 2: return -(1 + r.below(100))
    case 3: return 0
    case 4: return 1 << (20 + r.below(40))
    case 5: return 1 + r.below(64)
    case 6: return Double(r.below(100)) + 0.5
    case 7: return "__INF__"
    case 8: return r.pick(["", "gelu", "DownBlock2D", "silu", "text_time", "\u{1B}[31m\n"])
    case 9: return NSNull()
    case 10: return r.below(2) == 0
    case 11: return (0..<r.below(6)).map { _ in r.pick([0, 1, 4, 8, 16, -3, 1 << 40]) }
    case 12: return ["nested": r.below(9)]
    default: return 1e-300
    }
}

/// One to three edits: replace a value (or a list entry), delete a key, or add an unknown one.
func mutate(_ config: inout [String: Any], _ r: inout FuzzRandom) {
    for _ in 0...r.below(3) {
        let keys = config.keys.sorted()
        let key = r.pick(keys)
        switch r.below(6) {
        case 0: config.removeValue(forKey: key)
        case 1: config["unknown_\(r.below(5))"] = hostileValue(&r)
        case 2:
            if var list = config[key] as? [Any], !list.isEmpty {
                list[r.below(list.count)] = hostileValue(&r)
                config[key] = list
            } else { config[key] = hostileValue(&r) }
        default: config[key] = hostileValue(&r)
        }
    }
}

final class ConfigFuzzTests: XCTestCase {
    /// Mutated config.json files of every model component, loaded with their own
    /// tiny weights or another model's: each load gives a model or a one-line
    /// error, never a crash, a hang or a large allocation, and leaves no file behind.
    func testMutatedModelConfigs() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["NEST_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xC0F1)
        var r = FuzzRandom(seed: seed)
        let components = ["unet", "vae", "text_encoder", "image_encoder"]
        let count = fuzzCases(120)
        var loaded = 0
        let started = Date()
        for index in 0..<count {
            let component = r.pick(components)
            let flavour = r.pick(["sd1", "sd2", "sdxl"])
            let otherWeights = r.below(4) == 0 ? (r.pick(["sd1", "sd2", "sdxl"]), component) : nil
            var caseRandom = FuzzRandom(seed: r.next())
            var description = "seed \(seed) case \(index): \(flavour)/\(component) weights \(otherWeights.map { "\($0.0)/\($0.1)" } ?? "own")"
            guard FileManager.default.fileExists(atPath: ModelFixtures.component(flavour, component).path),
                  otherWeights.map({ FileManager.default.fileExists(atPath: ModelFixtures.component($0.0, $0.1).path) }) ?? true
            else { continue }
            let (url, cleanup) = try componentCopy(flavour, component, weightsFrom: otherWeights) { config in
                mutate(&config, &caseRandom)
                description += " config \(String(decoding: (try? JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])) ?? Data(), as: UTF8.self))"
            }
            defer { cleanup() }
            let before = try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
            let (result, peak) = MemoryStats.measurePeak { Result { try load(component, url) } }
            switch result {
            case .success: loaded += 1
            case .failure(let error):
                let message = String(describing: error)
                XCTAssertFalse(message.isEmpty || message.contains("\n"), "\(description): \(message)")
            }
            XCTAssertLessThan(peak, 32 << 20, description)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.path).sorted(), before, description)
        }
        print("ConfigFuzzTests: \(count) mutated configs (seed \(seed)), \(loaded) loaded, in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }
}
