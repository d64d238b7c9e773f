#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reverse-mode automatic differentiation.
///
/// Operations record a `GradNode` on their result only while recording is
/// enabled and at least one input requires gradients. Inference therefore
/// records nothing and keeps no activations alive, without any special mode;
/// `Autograd.noGrad` additionally switches recording off for code that runs
/// trainable modules without wanting gradients (evaluation, sampling).
public enum Autograd {
    /// Per-thread like PyTorch's grad mode, so concurrent callers (tests,
    /// a server handling requests) cannot switch each other's recording.
    /// The key's slot holds a non-nil marker while recording is *disabled*.
    private static let disabledKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static let marker = UnsafeMutableRawPointer(bitPattern: 1)!

    static var enabled: Bool {
        get { pthread_getspecific(disabledKey) == nil }
        set { pthread_setspecific(disabledKey, newValue ? nil : UnsafeRawPointer(marker)) }
    }

    public static var isEnabled: Bool { enabled }

    /// Runs `body` with gradient recording off on this thread, restoring the previous state.
    public static func noGrad<T>(_ body: () throws -> T) rethrows -> T {
        let previous = enabled
        enabled = false
        defer { enabled = previous }
        return try body()
    }

    /// Runs `body` with gradient recording on.
    public static func withGrad<T>(_ body: () throws -> T) rethrows -> T {
        let previous = enabled
        enabled = true
        defer { enabled = previous }
        return try body()
    }
}

/// How a tensor was computed: its inputs and a function from the gradient of
/// the output to the gradients of the inputs (nil for inputs needing none).
final class GradNode {
    let inputs: [Tensor]
    let name: String
    let backward: (Tensor) -> [Tensor?]

    init(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

extension Tensor {
    /// True when gradients should flow into this tensor.
    /// Whether gradients flow into this tensor (it requires them or was computed from one that does).
    @inline(__always) public var needsGrad: Bool { requiresGrad || node != nil }

    /// Attaches a backward function if recording is on and some input needs it.
    @discardableResult
    func recorded(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if Autograd.enabled && inputs.contains(where: { $0.needsGrad }) {
            node = GradNode(name, inputs, backward)
        }
        return self
    }

    /// Back-propagates from this scalar (or from `seed`, a gradient of this
    /// tensor's shape) into every leaf that requires gradients, adding to
    /// their `grad` so several backward passes accumulate.
    ///
    /// The graph is released afterwards unless `retainGraph` is set.
    public func backward(_ seed: Tensor? = nil, retainGraph: Bool = false) {
        if seed == nil {
            precondition(count == 1, "backward() without a seed needs a scalar, shape is \(shape)")
        }
        let start = seed ?? Tensor(repeating: 1, shape: shape)
        precondition(start.shape == shape, "backward seed shape \(start.shape) differs from \(shape)")

        // Topological order by iterative depth-first search.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.needsGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): start]
        Autograd.noGrad {
            for t in order.reversed() {
                let id = ObjectIdentifier(t)
                guard let g = grads.removeValue(forKey: id) else { continue }
                guard let node = t.node else {
                    if t.requiresGrad { t.accumulateGrad(g) }
                    continue
                }
                if t.requiresGrad { t.accumulateGrad(g) }
                let inputGrads = node.backward(g)
                precondition(inputGrads.count == node.inputs.count, "\(node.name): wrong number of gradients")
                for (input, ig) in zip(node.inputs, inputGrads) {
                    guard let ig, input.needsGrad else { continue }
                    precondition(ig.count == input.count,
                                 "\(node.name): gradient shape \(ig.shape) for input \(input.shape)")
                    let key = ObjectIdentifier(input)
                    if let existing = grads[key] {
                        grads[key] = existing.adding(ig)
                    } else {
                        grads[key] = ig.shape == input.shape ? ig : ig.reshaped(input.shape)
                    }
                }
                if !retainGraph { t.node = nil }
            }
        }
    }

    func accumulateGrad(_ g: Tensor) {
        let g = g.shape == shape ? g : g.reshaped(shape)
        if let existing = grad {
            existing.addInPlace(g)
        } else {
            grad = g.copy()
        }
    }
}
