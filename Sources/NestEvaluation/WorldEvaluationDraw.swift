import Foundation
import NestWorld

extension WorldEvaluation {
    /// The contexts an evaluation prompts with.
    public enum ContextSet: String, CaseIterable, Sendable, Codable {
        /// Background × style pairs no adapter dataset written with `--hold-out` contains.
        case heldOut = "held-out"
        /// Every other pair: contexts the encoders saw in training.
        case seen
        /// Any context.
        case any

        public func admits(_ context: Context) -> Bool {
            switch self {
            case .heldOut: return context.isHeldOut
            case .seen: return !context.isHeldOut
            case .any: return true
            }
        }

        /// The heading of this set's table.
        public var title: String {
            switch self {
            case .heldOut: return "Held-out contexts (background × style pairs no adapter saw)"
            case .seen: return "Seen contexts (pairs the adapters were trained on)"
            case .any: return "Any context"
            }
        }
    }

    /// Individual `index` of a domain under draw seed `draw` has identity seed
    /// base ⊕ (draw · 2²⁴ + index). Distinct (draw, index) give distinct seeds
    /// (index < 2²⁴, draw < 2⁴⁰), and `Identity.random` keeps distinct seeds
    /// apart (its stream is a bijection of the seed, and the marking seed is
    /// one of its outputs), so two draw seeds never evaluate the same individual.
    /// The base keeps the blocks away from the small seeds `nest world render` is given.
    public static func individualSeed(draw: UInt64, index: Int) -> UInt64 {
        precondition(index >= 0 && index < 1 << 24 && draw < 1 << 40, "individualSeed: draw \(draw), index \(index) out of range")
        return 0x6e65_7374_0000_0000 ^ (draw << 24 | UInt64(index))
    }

    /// Companions of two-subject cases start at this index of the draw's block,
    /// past any count of main subjects (at most 1000 per domain).
    static let companionIndex = 1 << 20

    /// The largest draw seed: the blocks of larger ones would overlap.
    public static let maximumDrawSeed: UInt64 = (1 << 40) - 1
}

extension WorldEvaluation {
    /// The individuals of a world dataset folder (`identities.json`, as `nest world dataset` writes it).
    public static func individuals(dataset folder: URL) throws -> [Identity] {
        let file = folder.appendingPathComponent("identities.json")
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw EvaluationError("\(file.path): cannot be read; --individuals takes a folder written by `nest world dataset`")
        }
        let list: [Identity]
        do { list = try JSONDecoder().decode([Identity].self, from: data) } catch {
            throw EvaluationError("\(file.path): not a list of world individuals")
        }
        guard !list.isEmpty else { throw EvaluationError("\(file.path): lists no individuals") }
        return list
    }
}
