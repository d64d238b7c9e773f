import ArgumentParser
import Foundation
import NestEngine
import NestIO

/// Prints what a weights file or an image holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the tensors of a safetensors file (or sharded index), or an image's size and text chunks.")

    @Argument(help: "A .safetensors file, a *.safetensors.index.json, a folder holding one, or a PNG/JPEG image.")
    var path: String

    @Option(help: "List at most this many tensors.")
    var limit: Int = 50

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            fail("\(path): no such file or folder")
        }
        let lower = path.lowercased()
        if !isDirectory.boolValue && (lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg")) {
            try inspectImage()
        } else {
            try inspectWeights()
        }
    }

    func inspectImage() throws {
        do {
            let image = try ImageFile.decode(path: path)
            print("\(path): \(image.width)×\(image.height) RGB\(image.alpha == nil ? "" : " + alpha")")
            if path.lowercased().hasSuffix(".png") {
                for (key, value) in try ImageFile.readPNGText(path: path) { print("  \(key): \(value)") }
            }
        } catch {
            fail(String(describing: error))
        }
    }

    func inspectWeights() throws {
        let weights: SafeTensorsCollection
        do { weights = try SafeTensorsCollection(path: path) } catch { fail(String(describing: error)) }
        var total = 0
        var byType: [String: Int] = [:]
        for name in weights.names {
            let info = try weights.info(name)
            total += info.elementCount
            byType[info.dtype.rawValue, default: 0] += info.elementCount
        }
        print("\(path): \(weights.names.count) tensors, \(formatCount(total)) parameters (\(byType.sorted { $0.key < $1.key }.map { "\($0.key) \(formatCount($0.value))" }.joined(separator: ", ")))")
        for (key, value) in weights.metadata.sorted(by: { $0.key < $1.key }) { print("  metadata \(key): \(value)") }
        for name in weights.names.prefix(limit) {
            let info = try weights.info(name)
            print("  \(name)  \(info.dtype.rawValue) \(info.shape)")
        }
        if weights.names.count > limit { print("  ... \(weights.names.count - limit) more (use --limit)") }
    }
}

func formatCount(_ n: Int) -> String {
    if n >= 1_000_000_000 { return String(format: "%.2fB", Double(n) / 1e9) }
    if n >= 1_000_000 { return String(format: "%.2fM", Double(n) / 1e6) }
    if n >= 1_000 { return String(format: "%.1fK", Double(n) / 1e3) }
    return String(n)
}
