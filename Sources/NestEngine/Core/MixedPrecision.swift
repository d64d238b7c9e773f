import CKernels
import Synchronization

/// bfloat16 mixed precision for training: inside `with(bfloat16: true)`, the
/// engine's float32 GEMMs — linear layers and both of their gradients,
/// unfolded convolutions and their weight gradients, batched matmuls,
/// attention's backward products — round their operands to
/// bfloat16 as they pack them and multiply with AVX512_BF16, summing in
/// float32 (`nest_bf16_gemm_general`). Everything else stays float32: the
/// weights and optimizer state, norms, softmax, elementwise work, reductions,
/// the Winograd convolutions (their transforms would magnify the operands'
/// rounding; they already do a quarter of the direct products) and
/// attention's forward block kernel.
///
/// Scoped per task, like the other kernel switches, and carried onto the
/// engine's workers (`KernelSwitches`); a no-op where the CPU lacks
/// AVX512_BF16, so the same run takes the float32 path there.
public enum MixedPrecision {
    /// Whether this CPU multiplies bfloat16 (AVX512F, AVX512BW, AVX512_BF16).
    public static let available = nest_kernels_bf16() != 0
    @TaskLocal static var taskOverride: Bool? = nil
    static let openScopes = Atomic<Int>(0)

    /// Runs `body` with GEMM operands rounded to bfloat16 (`on`) or not, for this task only.
    public static func with<T>(bfloat16 on: Bool, _ body: () throws -> T) rethrows -> T {
        openScopes.wrappingAdd(1, ordering: .relaxed)
        defer { openScopes.wrappingSubtract(1, ordering: .relaxed) }
        return try $taskOverride.withValue(on, operation: body)
    }

    /// Whether GEMMs here and now multiply in bfloat16.
    @inline(__always) public static var bfloat16Products: Bool {
        openScopes.load(ordering: .relaxed) != 0 && taskOverride == true && available
    }

    /// VDPBF16PS's multiply-add rate over float32 FMA's on this core,
    /// measured once (~3 ms; 0 without AVX512_BF16): 0.5–0.7 on an Intel Xeon
    /// without AMX (Emerald Rapids), where bfloat16 would slow down; on AMD
    /// Zen 4 the bfloat16 GEMM ran at twice sgemm's rate.
    public static let rateOverFloat32: Double = nest_bf16_fma_rate_ratio()

    /// Whether bfloat16 training products run here: AVX512_BF16 multiplies
    /// at least 1.25× as fast as float32 FMA (packing both operands costs the
    /// rest), or NEST_BF16_PRODUCTS says otherwise ("1": wherever the CPU has
    /// AVX512_BF16; "0": nowhere).
    public static var pays: Bool {
        guard available else { return false }
        switch assumePays.map({ $0 ? "1" : "0" }) ?? EngineConfiguration.current.bfloat16Products {
        case "1": return true
        case "0": return false
        default: return rateOverFloat32 >= 1.25
        }
    }
    /// Tests decide `pays` for their task (the measured rate differs between CPUs).
    @TaskLocal static var assumePays: Bool? = nil

    /// Products smaller than this (M·N·K) stay on sgemm: packing both operands
    /// per call would outweigh the multiplies of so small a product.
    static let minimumWork = 1 << 16
}
