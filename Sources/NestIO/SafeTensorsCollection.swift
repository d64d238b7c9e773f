// One lookup API over a single safetensors file or a sharded checkpoint
// described by a "*.safetensors.index.json" file (Hugging Face layout).

import Foundation

/// Tensors from one or more safetensors files, addressed by name.
///
/// For an index, every shard is opened (and fully validated) up front, and
/// the index is cross-checked against the shards, so a half-downloaded or
/// mixed-up checkpoint fails at open time rather than halfway through loading.
public final class SafeTensorsCollection: @unchecked Sendable {
    /// The path that was opened (file, index, or resolved from a directory).
    public let path: String
    /// Opened files: one for a plain file, the shards (sorted by file name) for an index.
    public let files: [SafeTensorsFile]
    /// All tensors, shard by shard, each shard in data-offset order.
    public let names: [String]
    /// The file's "__metadata__", or the index's "metadata" object with
    /// numbers rendered as text (e.g. "total_size").
    public let metadata: [String: String]
    /// Byte ranges are absolute within the tensor's own shard; use
    /// `file(containing:)` to know which one.
    public let tensors: [String: SafeTensorInfo]

    private let owners: [String: SafeTensorsFile]

    /// Opens a `.safetensors` file, a `*.safetensors.index.json`, or a
    /// directory holding exactly one index (preferred) or one safetensors file.
    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        var resolved = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            resolved = try Self.resolveDirectory(path)
        }
        self.path = resolved
        if resolved.hasSuffix(".json") {
            let index = try ShardIndex(path: resolved)
            files = try index.shardPaths.map { try SafeTensorsFile(path: $0) }
            metadata = index.metadata
            owners = try Self.assignOwners(files, index: index)
        } else {
            let file = try SafeTensorsFile(path: resolved)
            files = [file]
            metadata = file.metadata
            owners = Dictionary(uniqueKeysWithValues: file.names.map { ($0, file) })
        }
        names = files.flatMap(\.names)
        tensors = files.reduce(into: [:]) { all, file in all.merge(file.tensors) { first, _ in first } }
    }

    /// The file holding `name`, for callers that want its path or raw mapping.
    public func file(containing name: String) throws -> SafeTensorsFile {
        guard let file = owners[name] else {
            throw SafeTensorsError(.tensorNotFound, path: path, tensor: name, "no such tensor in this checkpoint")
        }
        return file
    }

    /// Same as SafeTensorsFile.info, across all shards.
    public func info(_ name: String) throws -> SafeTensorInfo { try file(containing: name).info(name) }

    /// Zero-copy bytes inside the owning shard's mapping (valid while `self` lives).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        try file(containing: name).rawBytes(name)
    }

    /// The tensor converted to Float32, whichever shard holds it.
    public func floats(_ name: String) throws -> [Float] { try file(containing: name).floats(name) }

    /// Converts into caller-owned memory; `count` must equal the element count.
    public func copyFloats(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        try file(containing: name).copyFloats(name, into: destination, count: count)
    }

    /// Maps every tensor to its shard, checking the index against reality.
    /// Shard tensors missing from the weight map are still served: loaders
    /// key on what the shards contain, and such a tensor is unambiguous.
    private static func assignOwners(_ files: [SafeTensorsFile], index: ShardIndex) throws -> [String: SafeTensorsFile] {
        var owners: [String: SafeTensorsFile] = [:]
        for file in files {
            for name in file.names {
                if let other = owners[name] {
                    throw SafeTensorsError(.duplicateTensor, path: index.path, tensor: name,
                        "present in both shard \(quoted(other.path)) and shard \(quoted(file.path))")
                }
                owners[name] = file
            }
        }
        for (name, shardPath) in index.weightMap where owners[name]?.path != shardPath {
            throw SafeTensorsError(.tensorNotFound, path: index.path, tensor: name,
                "listed in weight_map for shard \(quoted(shardPath)) but absent from it")
        }
        return owners
    }

    private static func resolveDirectory(_ directory: String) throws -> String {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw SafeTensorsError(.io, path: directory, "cannot list directory (\(FileErrorText.reason(error)))")
        }
        let indexes = entries.filter { $0.hasSuffix(".safetensors.index.json") }
        let singles = entries.filter { $0.hasSuffix(".safetensors") }
        // An index wins: shards themselves also end in ".safetensors".
        let candidates = indexes.isEmpty ? singles : indexes
        guard candidates.count == 1 else {
            let found = candidates.isEmpty ? "no safetensors file or index" : "several candidates: \(candidates)"
            throw SafeTensorsError(.io, path: directory, "cannot pick a checkpoint in directory: \(found)")
        }
        return directory + "/" + candidates[0]
    }
}

/// A parsed "*.safetensors.index.json": {"metadata": {...}, "weight_map": {tensor: shard}}.
private struct ShardIndex {
    let path: String
    /// Tensor name -> full shard path.
    var weightMap: [String: String] = [:]
    /// Distinct shard paths, sorted.
    var shardPaths: [String] = []
    var metadata: [String: String] = [:]

    init(path: String) throws {
        self.path = path
        let mapping = try MappedFile(path: path)
        func invalid(_ message: String) -> SafeTensorsError { SafeTensorsError(.invalidHeader, path: path, message) }
        guard String(validating: mapping.bytes, as: UTF8.self) != nil else { throw invalid("index is not valid UTF-8") }
        let json: JSONValue
        do { json = try JSONParser.parse(mapping.bytes) } catch let error as JSONParseError {
            throw invalid("index is not valid JSON: \(error.message)")
        }
        guard case .object(let top) = json else { throw invalid("index is JSON \(json.typeName), expected an object") }
        guard case .object(let entries)? = top.first(where: { $0.key == "weight_map" })?.value else {
            throw invalid("index has no \"weight_map\" object")
        }
        if case .object(let items)? = top.first(where: { $0.key == "metadata" })?.value {
            for (key, value) in items {
                switch value {
                case .string(let text), .number(let text, _): metadata[key] = text
                default: break  // nested values carry nothing we can use
                }
            }
        }

        let directory = splitPath(path).directory
        var shards = Set<String>()
        for (tensor, value) in entries {
            guard case .string(let shard) = value else {
                throw SafeTensorsError(.invalidHeader, path: path, tensor: tensor,
                    "weight_map value is \(value.typeName), expected a shard file name")
            }
            // Shards live next to the index; refuse names that would escape it.
            guard !shard.isEmpty, !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw SafeTensorsError(.invalidHeader, path: path, tensor: tensor,
                    "shard name \(quoted(shard)) must be a relative path inside the index's directory")
            }
            let shardPath = directory + "/" + shard
            if shards.insert(shardPath).inserted, !FileManager.default.fileExists(atPath: shardPath) {
                throw SafeTensorsError(.missingShard, path: path,
                    "shard \(quoted(shard)) listed in the index is missing (looked for \(shardPath))")
            }
            weightMap[tensor] = shardPath
        }
        shardPaths = shards.sorted()
    }
}
