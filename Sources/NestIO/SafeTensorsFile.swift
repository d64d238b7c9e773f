// Memory-mapped, validated, read-only access to one .safetensors file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One read-only mapping of a whole file. Kept separate from SafeTensorsFile
/// so that the mapping is released even when header validation throws.
final class MappedFile {
    let base: UnsafeRawPointer?
    let size: Int

    init(path: String) throws {
        // RegularFile refuses FIFOs, devices and folders without blocking in open(2).
        let fd: Int32
        do { (fd, size) = try RegularFile.open(path) } catch let error as FileReadError {
            throw SafeTensorsError(.io, path: path, error.reason)
        }
        // The mapping holds its own reference to the file; the descriptor is not needed after mmap.
        defer { close(fd) }
        guard size > 0 else { base = nil; return }  // mmap rejects length 0; the header check reports it
        // Private and writable: weights used in place stay editable (training,
        // merges), and a write copies the page instead of reaching the file.
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw SafeTensorsError(.io, path: path, "mmap failed: \(errnoText())")
        }
        base = UnsafeRawPointer(address)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A validated safetensors file, mapped read-only for the object's lifetime.
///
/// All structural checks happen in `init`, so lookups can only fail for a
/// missing name or a wrong destination size. Tensor data is never copied
/// until asked for, which keeps opening a multi-GB checkpoint instant.
///
/// The class is immutable after init, so it can be shared across threads.
/// Like any mmap reader, it assumes nobody truncates the file in place while
/// it is open (SafeTensorsWriter replaces files by rename, which is safe).
public final class SafeTensorsFile: @unchecked Sendable {
    /// Path as given to `init`, used in every error message.
    public let path: String
    /// All tensors by name.
    public let tensors: [String: SafeTensorInfo]
    /// Tensor names in data-offset order, i.e. the order of a sequential read.
    public let names: [String]
    /// The header's "__metadata__" map (empty when absent).
    public let metadata: [String: String]

    private let mapping: MappedFile

    /// Opens, maps and validates `path`. Throws SafeTensorsError for I/O
    /// failures and for any malformed header.
    public init(path: String) throws {
        mapping = try MappedFile(path: path)
        let header = try SafeTensorsHeader(file: mapping.bytes, path: path)
        self.path = path
        tensors = header.tensors
        names = header.names
        metadata = header.metadata
    }

    /// Size of the file in bytes.
    public var fileSize: Int { mapping.size }

    /// Looks up a tensor; the error names both the tensor and this file.
    public func info(_ name: String) throws -> SafeTensorInfo {
        guard let info = tensors[name] else {
            throw SafeTensorsError(.tensorNotFound, path: path, tensor: name, "no such tensor in this file")
        }
        return info
    }

    /// The tensor's bytes, little-endian, straight from the mapping (zero-copy).
    /// Only valid while this object is alive.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        bytes(of: try info(name))
    }

    /// The tensor converted to Float32 (from any float, integer or bool dtype).
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        return [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            if let destination = buffer.baseAddress {
                FloatConversion.convert(bytes(of: info), dtype: info.dtype,
                                        into: destination, count: info.elementCount)
            }
            initialized = info.elementCount
        }
    }

    /// Converts the tensor to Float32 straight into caller-owned memory (e.g.
    /// a tensor's storage), avoiding an intermediate array. `count` must equal
    /// the tensor's element count, so a shape mix-up fails loudly.
    public func copyFloats(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let info = try info(name)
        guard count == info.elementCount else {
            throw SafeTensorsError(.countMismatch, path: path, tensor: name,
                "destination holds \(count) floats but shape \(info.shape) has \(info.elementCount) elements")
        }
        FloatConversion.convert(bytes(of: info), dtype: info.dtype, into: destination, count: count)
    }

    private func bytes(of info: SafeTensorInfo) -> UnsafeRawBufferPointer {
        // Ranges were validated against the file size at open time.
        UnsafeRawBufferPointer(rebasing: mapping.bytes[info.byteRange])
    }
}
