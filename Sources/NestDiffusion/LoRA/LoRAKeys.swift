import Foundation

/// The model part a LoRA tensor addresses.
public enum LoRAComponent: String, CaseIterable, Sendable {
    case unet
    case textEncoder = "text_encoder"
    case textEncoder2 = "text_encoder_2"
}

/// How a file names the modules it changes.
enum LoRANaming: Sendable {
    /// Dotted module paths (diffusers/PEFT and diffusers' older attention-processor files).
    case dotted
    /// The web UI's (kohya) underscore-joined names, resolved by `LoRANameIndex`.
    case kohya
}

/// One tensor name of a LoRA file, taken apart.
struct LoRAKey: Hashable {
    enum Role: Hashable { case down, up, alpha }
    let component: LoRAComponent
    let naming: LoRANaming
    /// Module path (dotted) or kohya name without its prefix.
    let module: String
    let role: Role
}

/// The tables that take tensor names apart. Each layout is a list of rows, so a
/// layout not covered here is one row away, and a name no row takes is reported.
enum LoRAKeyTable {
    /// Name endings, longest first, and what each tensor is.
    static let suffixes: [(suffix: String, role: LoRAKey.Role)] = [
        (".lora_A.weight", .down), (".lora_B.weight", .up),
        (".lora_down.weight", .down), (".lora_up.weight", .up),
        (".lora.down.weight", .down), (".lora.up.weight", .up),
        ("_lora.down.weight", .down), ("_lora.up.weight", .up),
        (".lora_linear_layer.down.weight", .down), (".lora_linear_layer.up.weight", .up),
        (".alpha", .alpha),
    ]

    /// Name beginnings: the component and how the rest is spelled.
    static let prefixes: [(prefix: String, component: LoRAComponent, naming: LoRANaming)] = [
        ("unet.", .unet, .dotted),
        ("text_encoder_2.", .textEncoder2, .dotted),
        ("text_encoder.", .textEncoder, .dotted),
        ("lora_unet_", .unet, .kohya),
        ("lora_te1_", .textEncoder, .kohya),
        ("lora_te2_", .textEncoder2, .kohya),
        ("lora_te_", .textEncoder, .kohya),
    ]

    /// diffusers' attention-processor files (`…attn1.processor.to_q_lora.down.weight`) name
    /// the processor's projection; these rows give the module it corrects.
    static let processorRenames: [(from: String, to: String)] = [
        ("processor.to_q", "to_q"), ("processor.to_k", "to_k"), ("processor.to_v", "to_v"),
        ("processor.to_out", "to_out.0"),
        ("self_attn.to_q", "self_attn.q_proj"), ("self_attn.to_k", "self_attn.k_proj"),
        ("self_attn.to_v", "self_attn.v_proj"), ("self_attn.to_out", "self_attn.out_proj"),
    ]

    /// Unprefixed dotted names belong to the UNet (diffusers saves UNet-only files so).
    static let unprefixed: (component: LoRAComponent, naming: LoRANaming) = (.unet, .dotted)

    /// The parts of `name`, or nil when no row takes it.
    static func parse(_ name: String) -> LoRAKey? {
        guard let (suffix, role) = suffixes.first(where: { name.hasSuffix($0.suffix) }) else { return nil }
        var module = String(name.dropLast(suffix.count))
        var component = unprefixed.component, naming = unprefixed.naming
        if let row = prefixes.first(where: { module.hasPrefix($0.prefix) }) {
            module = String(module.dropFirst(row.prefix.count))
            component = row.component; naming = row.naming
        } else if module.hasPrefix("lora_") {
            return nil
        }
        if suffix.hasPrefix("_lora.") {
            for row in processorRenames where module.hasSuffix(row.from) {
                module = String(module.dropLast(row.from.count)) + row.to
                break
            }
        }
        guard !module.isEmpty else { return nil }
        return LoRAKey(component: component, naming: naming, module: module, role: role)
    }
}
