import NestEngine

/// A training run's `"precision"`: `float32` (the default) or `bf16`, bfloat16
/// mixed precision: float32 weights, gradients and optimizer state, with the
/// GEMMs' operands rounded to bfloat16 and multiplied with float32 sums (see
/// `MixedPrecision`). bfloat16 runs only where it is faster: a CPU without
/// AVX512_BF16, or one whose bfloat16 dot products are no faster than its
/// float32 FMA (Intel Xeons without AMX), trains in float32 and says so.
public enum TrainingPrecision: String, Codable, Sendable {
    case float32, bf16

    /// Whether this run's products are bfloat16 on this machine.
    public var multipliesInBFloat16: Bool { self == .bf16 && MixedPrecision.pays }

    /// One line for the user when `bf16` was asked for but float32 runs, nil otherwise.
    public var fallbackNote: String? {
        guard self == .bf16, !MixedPrecision.pays else { return nil }
        if !MixedPrecision.available { return "precision bf16: this CPU has no AVX512_BF16; training in float32" }
        return String(format: "precision bf16: this CPU's bfloat16 dot products run at %.2f× its float32 multiply-add rate (measured), so bfloat16 would be slower; training in float32",
                      MixedPrecision.rateOverFloat32)
    }
}
