import Foundation
import NestEngine
import Testing

/// The engine's environment knobs, read in one place: defaults, values, and values
/// out of range that keep the default.
@Suite struct EngineConfigurationTests {
    @Test func defaultsAndValues() {
        let defaults = EngineConfiguration(environment: [:])
        #expect(defaults.threads >= 1 && !defaults.dispatchOnly && defaults.spinMicroseconds == 200)
        #expect(defaults.poolMegabytes == 512 && defaults.poolSlackMegabytes == 256 && defaults.hugePages)
        #expect(defaults.winograd && !defaults.winogradThroughBLAS && defaults.winogradPackedMinimumTiles == 0)
        #expect(defaults.bfloat16Products == "auto")
        let set = EngineConfiguration(environment: [
            "NEST_THREADS": "3", "NEST_DISPATCH": "1", "NEST_SPIN_US": "50", "NEST_POOL_MB": "0", "NEST_POOL_SLACK_MB": "64",
            "NEST_HUGE_PAGES": "0", "NEST_WINOGRAD": "0", "NEST_WINOGRAD_BLAS": "1", "NEST_WINOGRAD_PACKED_TILES": "256",
            "NEST_BF16_PRODUCTS": "1"])
        #expect(set.threads == 3 && set.dispatchOnly && set.spinMicroseconds == 50 && set.poolMegabytes == 0)
        #expect(set.poolSlackMegabytes == 64 && !set.hugePages && !set.winograd && set.winogradThroughBLAS)
        #expect(set.winogradPackedMinimumTiles == 256 && set.bfloat16Products == "1")
        #expect(set.entries.count == 10 && set.entries.first { $0.variable == "NEST_THREADS" }?.value == "3")
    }

    @Test func valuesOutOfRangeKeepTheDefault() {
        let hostile = EngineConfiguration(environment: [
            "NEST_THREADS": "1000000", "NEST_SPIN_US": "-5", "NEST_POOL_MB": "-1", "NEST_POOL_SLACK_MB": "x",
            "NEST_WINOGRAD_PACKED_TILES": "-3", "NEST_BF16_PRODUCTS": "yes"])
        let defaults = EngineConfiguration(environment: [:])
        #expect(hostile == defaults)
        #expect(EngineConfiguration(environment: ["NEST_THREADS": "0"]).threads == defaults.threads)
    }
}
