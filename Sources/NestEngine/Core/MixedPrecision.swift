import CKernels
import Synchronization

/// bfloat16 mixed precision for training: inside `with(bfloat16: true)`, the
/// engine's float32 GEMMs — linear layers and both of their gradients,
/// unfolded convolutions and their weight gradients, batched matmuls,
/// attention's products forward and backward — round their operands to
/// bfloat16 as they pack them and multiply with AVX512_BF16, summing in
/// float32 (`nest_bf16_gemm_general`). Everything else stays float32: the
/// weights and optimizer state, norms, softmax, elementwise work, reductions,
/// and the Winograd convolutions (their transforms would magnify the
/// operands' rounding; they already do a quarter of the direct products).
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

    /// Products smaller than this (M·N·K) stay on sgemm: packing both
    /// operands per call costs more than the faster multiplies save.
    static let minimumWork = 1 << 16
}
