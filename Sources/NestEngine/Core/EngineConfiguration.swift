#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The engine's knobs, read once from the environment in one place. Every part of
/// the engine that can be tuned reads it from `EngineConfiguration.current`;
/// `nest inspect --system` prints it. Values out of range keep the default.
public struct EngineConfiguration: Sendable, Equatable {
    /// NEST_THREADS: worker threads for the kernels, 1–1024 (default: the cores online).
    public var threads: Int
    /// NEST_DISPATCH=1: every job goes to dispatch instead of the engine's workers.
    public var dispatchOnly = false
    /// NEST_SPIN_US: how long an idle worker spins before it sleeps (default 200 µs).
    public var spinMicroseconds: UInt64 = 200
    /// NEST_POOL_MB: most idle bytes the buffer pool keeps for reuse, in MiB (default 512).
    public var poolMegabytes = 512
    /// NEST_POOL_SLACK_MB: how far live + idle memory may pass the live peak, in MiB (default 256).
    public var poolSlackMegabytes = 256
    /// NEST_HUGE_PAGES=0: no transparent-huge-page advice for large buffers.
    public var hugePages = true
    /// NEST_WINOGRAD=0: eligible 3×3 convolutions take the direct path.
    public var winograd = true
    /// NEST_WINOGRAD_BLAS=1: Winograd products through sgemm instead of the packed kernel.
    public var winogradThroughBLAS = false
    /// NEST_WINOGRAD_PACKED_TILES: fewest tiles for the packed Winograd path (default 0).
    public var winogradPackedMinimumTiles = 0
    /// NEST_BF16_PRODUCTS: where bfloat16 products run (training's "precision": "bf16",
    /// weights stored as bfloat16 by --bf16): "auto" (default: where measured faster than
    /// float32), "1" (wherever the CPU has AVX512_BF16, to check their numbers), "0" (nowhere).
    public var bfloat16Products = "auto"

    /// The defaults, then whatever `environment` sets (names as above).
    public init(environment: [String: String]) {
        threads = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if let n = environment["NEST_THREADS"].flatMap({ Int($0) }), (1...1024).contains(n) { threads = n }
        if let v = environment["NEST_DISPATCH"] { dispatchOnly = v == "1" }
        if let us = environment["NEST_SPIN_US"].flatMap({ UInt64($0) }), us <= 1_000_000 { spinMicroseconds = us }
        if let mb = environment["NEST_POOL_MB"].flatMap({ Int($0) }), (0...(1 << 20)).contains(mb) { poolMegabytes = mb }
        if let mb = environment["NEST_POOL_SLACK_MB"].flatMap({ Int($0) }), (0...(1 << 20)).contains(mb) { poolSlackMegabytes = mb }
        if let v = environment["NEST_HUGE_PAGES"] { hugePages = v != "0" }
        if let v = environment["NEST_WINOGRAD"] { winograd = v != "0" }
        if let v = environment["NEST_WINOGRAD_BLAS"] { winogradThroughBLAS = v == "1" }
        if let v = environment["NEST_BF16_PRODUCTS"], ["auto", "1", "0"].contains(v) { bfloat16Products = v }
        if let n = environment["NEST_WINOGRAD_PACKED_TILES"].flatMap({ Int($0) }), n >= 0 { winogradPackedMinimumTiles = n }
    }

    /// This process's configuration, read at first use.
    public static let current = EngineConfiguration(environment: ProcessInfo.processInfo.environment)

    /// Each knob with its environment variable and value, for printing.
    public var entries: [(variable: String, value: String, meaning: String)] {
        [("NEST_THREADS", "\(threads)", "worker threads for the kernels"),
         ("NEST_DISPATCH", dispatchOnly ? "1" : "0", "1: jobs go to dispatch, not the engine's workers"),
         ("NEST_SPIN_US", "\(spinMicroseconds)", "µs an idle worker spins before sleeping"),
         ("NEST_POOL_MB", "\(poolMegabytes)", "MiB of idle buffers kept for reuse"),
         ("NEST_POOL_SLACK_MB", "\(poolSlackMegabytes)", "MiB live + idle may pass the live peak"),
         ("NEST_HUGE_PAGES", hugePages ? "1" : "0", "transparent huge pages for buffers ≥ 2 MiB"),
         ("NEST_WINOGRAD", winograd ? "1" : "0", "Winograd for eligible 3×3 convolutions"),
         ("NEST_WINOGRAD_BLAS", winogradThroughBLAS ? "1" : "0", "1: Winograd products through sgemm"),
         ("NEST_WINOGRAD_PACKED_TILES", "\(winogradPackedMinimumTiles)", "fewest tiles for packed Winograd products"),
         ("NEST_BF16_PRODUCTS", bfloat16Products, "bfloat16 products: auto (where faster), 1, 0")]
    }
}
