import Foundation
import NestIO

extension WorldModel {
    /// Copies a model folder with every safetensors file outside `runs/` stored as float16
    /// (half the size; the loader widens to float32) and every other file as it is.
    /// `target` must not exist yet. Returns the bytes written.
    public static func pack(_ source: URL, to target: URL) throws -> Int {
        let fm = FileManager.default
        if fm.fileExists(atPath: target.path) {
            throw WorldError("\(target.path) already exists; choose a new folder (nothing was overwritten)")
        }
        guard let walker = fm.enumerator(at: source, includingPropertiesForKeys: [.isDirectoryKey]) else {
            throw WorldError("\(source.path): cannot read the folder")
        }
        var bytes = 0
        for case let url as URL in walker {
            let relative = String(url.path.dropFirst(source.path.count + 1))
            let destination = target.appendingPathComponent(relative)
            if (try? url.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true {
                try fm.createDirectory(at: destination, withIntermediateDirectories: true)
                continue
            }
            try fm.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            if url.pathExtension == "safetensors" && !relative.hasPrefix("runs") {
                let file = try SafeTensorsFile(path: url.path)
                let tensors = try file.names.map { ($0, try file.tensor($0)) }
                try saveSafeTensors(tensors, to: destination.path, dtype: .f16, metadata: file.metadata)
            } else {
                try fm.copyItem(at: url, to: destination)
            }
            bytes += (try? fm.attributesOfItem(atPath: destination.path)[.size] as? Int) ?? 0
        }
        return bytes
    }
}
