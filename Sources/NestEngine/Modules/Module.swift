/// A node in a model tree. Children and parameters are registered under the
/// names the checkpoint uses, so a parameter's dotted path
/// (`down_blocks.0.resnets.1.conv1.weight`) is its tensor name in the file
/// and loading is a walk over names.
open class Module {
    /// A registered tensor. Every parameter has its checkpoint's shape and
    /// element order (convolutions included: OIHW), so loading and saving
    /// never reorder values.
    public final class Parameter {
        public let tensor: Tensor
        init(_ tensor: Tensor) { self.tensor = tensor }

        /// The tensor's shape as it appears in a checkpoint (its own).
        public var checkpointShape: [Int] { tensor.shape }
    }

    public private(set) var children: [(name: String, module: Module)] = []
    public private(set) var ownParameters: [(name: String, parameter: Parameter)] = []

    public init() {}

    /// Registers a child module under `name` and returns it.
    @discardableResult
    public func child<M: Module>(_ name: String, _ module: M) -> M {
        precondition(!children.contains { $0.name == name }, "duplicate child \(name)")
        children.append((name, module))
        return module
    }

    /// Registers a parameter under `name` and returns its tensor.
    @discardableResult
    public func parameter(_ name: String, _ tensor: Tensor) -> Tensor {
        precondition(!ownParameters.contains { $0.name == name }, "duplicate parameter \(name)")
        ownParameters.append((name, Parameter(tensor)))
        return tensor
    }

    /// Every parameter below this module, by dotted path, in registration order.
    public func namedParameters(prefix: String = "") -> [(path: String, parameter: Parameter)] {
        var out: [(String, Parameter)] = ownParameters.map { (prefix + $0.name, $0.parameter) }
        for (name, module) in children {
            out += module.namedParameters(prefix: prefix + name + ".")
        }
        return out
    }

    /// Path → tensor, for lookup and checkpointing.
    public func parameterTensors(prefix: String = "") -> [(path: String, tensor: Tensor)] {
        namedParameters(prefix: prefix).map { ($0.path, $0.parameter.tensor) }
    }

    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.parameter.tensor.count } }

    /// Parameters that currently require gradients.
    public var trainableParameters: [(path: String, tensor: Tensor)] {
        parameterTensors().filter { $0.tensor.requiresGrad }
    }

    /// The parameter at a dotted path, if any.
    public func parameter(at path: String) -> Parameter? {
        namedParameters().first { $0.path == path }?.parameter
    }

    /// The module at a dotted path ("" is self).
    public func module(at path: String) -> Module? {
        if path.isEmpty { return self }
        var current: Module = self
        for part in path.split(separator: ".") {
            guard let next = current.children.first(where: { $0.name == part })?.module else { return nil }
            current = next
        }
        return current
    }

    /// Turns gradients on for every parameter whose path starts with `prefix`
    /// (all of them for ""). A prefix matches whole path components only.
    public func unfreeze(prefix: String = "") { setRequiresGrad(true, prefix: prefix) }

    /// Turns gradients off for parameters under `prefix`.
    public func freeze(prefix: String = "") { setRequiresGrad(false, prefix: prefix) }

    private func setRequiresGrad(_ flag: Bool, prefix: String) {
        for (path, p) in namedParameters() where Module.path(path, isUnder: prefix) {
            p.tensor.requiresGrad = flag
            if !flag { p.tensor.grad = nil }
        }
    }

    static func path(_ path: String, isUnder prefix: String) -> Bool {
        if prefix.isEmpty || path == prefix { return true }
        let p = prefix.hasSuffix(".") ? prefix : prefix + "."
        return path.hasPrefix(p)
    }
}

/// A numbered list of children: paths `0`, `1`, ... like PyTorch's ModuleList.
public final class ModuleList<Element: Module>: Module {
    public private(set) var items: [Element] = []

    public init(_ items: [Element]) {
        super.init()
        for item in items { append(item) }
    }

    public func append(_ item: Element) {
        child(String(items.count), item)
        items.append(item)
    }

    public subscript(i: Int) -> Element { items[i] }
    public var count: Int { items.count }
}
