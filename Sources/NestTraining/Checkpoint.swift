import Foundation
import NestEngine
import NestIO

/// Where a run is: enough to continue exactly where it stopped.
public struct TrainingState: Codable, Sendable, Equatable {
    public var step: Int = 0
    public var epoch: Int = 0
    /// Index into the epoch's shuffled sample order.
    public var position: Int = 0
    public var seed: UInt64 = 0
    public init(step: Int = 0, epoch: Int = 0, position: Int = 0, seed: UInt64 = 0) {
        self.step = step; self.epoch = epoch; self.position = position; self.seed = seed
    }
}

/// Training checkpoints: the trained parameters (by their checkpoint names),
/// AdamW's moments and step, and the run state, in one safetensors file.
/// Writing is atomic (temporary file + rename), so a run killed while saving
/// leaves the previous checkpoint intact.
public enum TrainingCheckpoint {
    static let momentPrefix = ("optimizer.m.", "optimizer.v.")

    public static func save(parameters: [(path: String, tensor: Tensor)], optimizer: AdamW, state: TrainingState,
                            to path: String, extra: [String: String] = [:]) throws {
        var tensors: [(name: String, tensor: Tensor)] = parameters.map { ($0.path, $0.tensor) }
        for (i, p) in optimizer.parameters.enumerated() {
            tensors.append((momentPrefix.0 + p.path, optimizer.firstMoments[i]))
            tensors.append((momentPrefix.1 + p.path, optimizer.secondMoments[i]))
        }
        let stateJSON = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        var metadata = extra
        metadata["nest.training_state"] = stateJSON
        metadata["nest.optimizer_step"] = String(optimizer.step)
        try saveSafeTensors(tensors, to: path, metadata: metadata, overwrite: true)
    }

    /// Restores parameters and optimizer in place; returns the run state.
    /// A checkpoint without any optimizer moments (a compact copy carried
    /// between machines, tools/world_stages.py) leaves AdamW fresh: zero
    /// moments at its step 0, so its bias correction restarts with them.
    public static func load(into parameters: [(path: String, tensor: Tensor)], optimizer: AdamW, from path: String) throws -> TrainingState {
        let file = try SafeTensorsFile(path: path)
        func read(_ name: String, into t: Tensor) throws {
            guard let info = file.tensors[name] else { throw ManifestError(description: "\(path): checkpoint has no tensor \(name)") }
            guard info.shape == t.shape else {
                throw ManifestError(description: "\(path): \(name) has shape \(info.shape), the model expects \(t.shape)")
            }
            try file.copyFloats(name, into: t.data, count: t.count)
        }
        for (name, tensor) in parameters { try read(name, into: tensor) }
        let hasMoments = file.tensors.keys.contains { $0.hasPrefix(momentPrefix.0) || $0.hasPrefix(momentPrefix.1) }
        var first: [Tensor] = [], second: [Tensor] = []
        for p in optimizer.parameters where hasMoments {
            let m = Tensor(zeros: p.tensor.shape), v = Tensor(zeros: p.tensor.shape)
            try read(momentPrefix.0 + p.path, into: m)
            try read(momentPrefix.1 + p.path, into: v)
            first.append(m); second.append(v)
        }
        guard let stateText = file.metadata["nest.training_state"], let stepText = file.metadata["nest.optimizer_step"],
              let step = Int(stepText),
              let state = try? JSONDecoder().decode(TrainingState.self, from: Data(stateText.utf8)) else {
            throw ManifestError(description: "\(path): not a nest training checkpoint (no training state)")
        }
        if hasMoments { optimizer.loadState(step: step, first: first, second: second) }
        return state
    }
}

/// The order samples are visited in: a fresh seeded shuffle every epoch, so
/// (seed, epoch, position) identifies the next sample after a resume.
public struct SampleOrder {
    public let count: Int
    public let seed: UInt64

    public init(count: Int, seed: UInt64) { self.count = count; self.seed = seed }

    public func permutation(epoch: Int) -> [Int] {
        var rng = SeededRandom(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        return order
    }

    /// The next `batch` sample indices from `state`, advancing it (and the epoch at the end).
    public func next(_ batch: Int, state: inout TrainingState) -> [Int] {
        var out: [Int] = []
        var order = permutation(epoch: state.epoch)
        while out.count < batch {
            if state.position >= count {
                state.epoch += 1
                state.position = 0
                order = permutation(epoch: state.epoch)
            }
            out.append(order[state.position])
            state.position += 1
        }
        return out
    }
}
