import NestEngine

/// The engine's process-wide settings, for front ends (the `nest` command) that
/// drive models without reaching into the engine's kernels themselves.
public enum EngineSetup {
    /// Chooses the engine's fastest kernels for this machine; called once at startup.
    public static func preferFastKernels() { BLAS.preferFastKernels() }

    /// Worker threads for the engine's kernels.
    public static var threads: Int { Threads.count }

    /// Sets the worker threads for the engine's kernels (the caller checks the range).
    public static func apply(threads: Int) { Threads.count = threads }
}

/// What the engine found on this machine and the environment settings in effect.
public struct SystemReport: Sendable {
    /// Each NEST_* environment setting: its variable, the value in effect, what it does.
    public let settings: [(variable: String, value: String, meaning: String)]
    /// Whether the AVX-512 kernels run on this CPU.
    public let avx512: Bool
    /// Whether the AVX2+FMA kernels run (CPUs without AVX-512).
    public let avx2: Bool
    /// Whether the CPU has AVX512_BF16 (bfloat16 weights multiply natively).
    public let avx512BFloat16: Bool
    /// Its bfloat16 dot products' multiply-add rate over float32 FMA, measured (0 without AVX512_BF16).
    public let bfloat16Rate: Double
    /// Whether that rate makes bfloat16 training products faster (`MixedPrecision.pays`).
    public let bfloat16Pays: Bool

    /// This process's report.
    public static var current: SystemReport {
        SystemReport(settings: EngineConfiguration.current.entries, avx512: VectorKernels.available,
                     avx2: !VectorKernels.available && VectorKernels.availableAVX2, avx512BFloat16: BFloat16Weights.hardware,
                     bfloat16Rate: MixedPrecision.rateOverFloat32, bfloat16Pays: MixedPrecision.pays)
    }
}
