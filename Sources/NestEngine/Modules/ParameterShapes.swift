#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Building a module to learn its parameter shapes without allocating them.
///
/// A config read from a file decides how large every layer is. Comparing the
/// shapes it implies with a checkpoint's header before anything is allocated
/// turns a wrong or absurd config into a one-line error naming the tensor,
/// instead of gigabytes allocated and filled only to be thrown away (or an
/// allocation that cannot succeed at all). Layers create their parameters
/// through `make`; inside `plan` they get placeholders that own no memory.
public enum ParameterShapes {
    static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Owner of every placeholder's (never touched) storage.
    final class Placeholder: @unchecked Sendable {
        static let shared = Placeholder()
        let pointer = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    }

    /// Stands in for the storage of parameters built for loading: a
    /// reservation of address space that is never readable, so a parameter
    /// used before the loader filled it faults at once instead of computing
    /// with garbage. It costs no memory.
    final class Unloaded: @unchecked Sendable {
        static let shared = Unloaded()
        static let reservedBytes = 1 << 32
        let pointer: UnsafeMutablePointer<Float>
        init() {
            let address = mmap(nil, Self.reservedBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let address, address != MAP_FAILED else { fatalError("cannot reserve address space for unloaded parameters") }
            pointer = address.bindMemory(to: Float.self, capacity: 1)
        }
    }

    /// What `make` hands out on this thread: 1 while planning, 2 while building for loading.
    static var mode: Int { Int(bitPattern: pthread_getspecific(key)) }

    /// True while `plan` builds on this thread.
    public static var isPlanning: Bool { mode == 1 }

    /// True while `forLoading` builds on this thread.
    public static var isBuildingForLoading: Bool { mode == 2 }

    /// Runs `build` with placeholder parameters and returns what it built. The
    /// result must only be asked for names and shapes (e.g. `namedParameters()`
    /// and `checkpointShape`): its parameters hold no values, and computing
    /// with it or writing into it is a programming error.
    public static func plan<M>(_ build: () throws -> M) rethrows -> M { try building(mode: 1, build) }

    /// Runs `build` with parameters that own no memory and await a loader
    /// (`Module.load` gives each its storage, mapped from the file where it
    /// can). Nothing is initialized, randomly or otherwise, that the file
    /// will overwrite. A parameter the loader does not fill stays unusable
    /// and `Module.load` reports it by name (`Module.unloadedParameters`).
    public static func forLoading<M>(_ build: () throws -> M) rethrows -> M { try building(mode: 2, build) }

    private static func building<M>(mode: Int, _ build: () throws -> M) rethrows -> M {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: mode))
        defer { pthread_setspecific(key, previous) }
        return try build()
    }

    /// A parameter tensor of `shape`: `make()` normally, a placeholder while
    /// planning or building for loading.
    public static func make(_ shape: [Int], _ make: () -> Tensor) -> Tensor {
        let count = shape.reduce(1, *)
        switch mode {
        case 1:
            return Tensor(storage: Storage(borrowing: Placeholder.shared.pointer, count: count, owner: Placeholder.shared),
                          shape: shape)
        case 2:
            return Tensor(storage: Storage(borrowing: Unloaded.shared.pointer, count: count, owner: Unloaded.shared),
                          shape: shape)
        default:
            return make()
        }
    }
}

extension Tensor {
    /// True for a parameter built for loading that no loader has filled yet.
    public var awaitsLoading: Bool { storage.owner === ParameterShapes.Unloaded.shared }
}

extension Module {
    /// Paths of the parameters built for loading that no loader filled.
    public var unloadedParameters: [String] {
        namedParameters().filter { $0.parameter.tensor.awaitsLoading && !$0.parameter.tensor.released }.map(\.path)
    }

    /// Names and checkpoint shapes of every parameter, as `load` compares them.
    public func checkpointShapes(prefix: String = "") -> [(name: String, shape: [Int])] {
        namedParameters().map { (prefix + $0.path, $0.parameter.checkpointShape) }
    }
}

/// The problems a strict load would report for parameters of these names and
/// shapes: shape mismatches, missing tensors and (when `strict`) unexpected ones.
public func weightProblems(_ expected: [(name: String, shape: [Int])], in source: WeightSource, prefix: String = "",
                           strict: Bool = true) -> (problems: [String], missing: [String], unexpected: [String]) {
    var problems: [String] = [], missing: [String] = []
    var names = Set<String>()
    for (name, want) in expected {
        names.insert(name)
        guard let shape = source.shape(of: name) else { missing.append(name); continue }
        if shape != want { problems.append("\(name): checkpoint shape \(shape), model expects \(want)") }
    }
    let unexpected = source.tensorNames.filter { $0.hasPrefix(prefix) && !names.contains($0) }
    if strict {
        problems += missing.map { "\($0): missing from checkpoint" }
        problems += unexpected.map { "\($0): not a parameter of the model" }
    }
    return (problems, missing, unexpected)
}

/// One line listing the first problems (a checkpoint for another model can have hundreds).
public func weightProblemSummary(_ problems: [String]) -> String {
    let shown = problems.prefix(20).joined(separator: "; ")
    return "\(problems.count) weight problem(s): \(shown)\(problems.count > 20 ? "; ..." : "")"
}
