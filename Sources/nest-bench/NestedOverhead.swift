import Foundation
import NestEngine
import NestModels
import NestPersonalization

/// `nest-bench nested-overhead [--rounds R]`: what Nested Attention adds to
/// one SD 1.5 UNet forward (batch 2, 64×64 latents, the subject token in both
/// items as in `compare`). One UNet in one process, the variants interleaved
/// round by round and the best of each kept, so the machine's drift between
/// processes does not masquerade as overhead.
func nestedOverhead(arguments: [String]) {
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 3
    let config = try! UNet2DConditionConfig.decode(benchConfig("sd15_unet.json"), name: "nested-overhead")
    let unet = UNet2DConditionModel(config: config, seed: 1)
    let x = Tensor.randn([2, 64, 64, 4], seed: 2), context = Tensor.randn([2, 77, 768], seed: 3)
    let subjects = [5, 9].enumerated().map { i, index in
        NestedBindingSubject(adapter: benchAdapter(unet, tokenWidth: 768, seed: UInt64(i)),
                             tokens: Tensor.randn([1, 16, 768], seed: 10 + UInt64(i)), tokenIndex: [index, index])
    }
    func run(_ count: Int) -> Double {
        let binding = count == 0 ? nil : try! NestedAttentionBinding.install(on: unet, subjects: Array(subjects.prefix(count)))
        defer { binding?.uninstall() }
        return seconds { _ = Autograd.noGrad { unet(sample: x, timestep: [999, 999], encoderHiddenStates: context) } }
    }
    print("nest-bench nested-overhead: \(Threads.count) thread(s), \(rounds) rounds after a warm-up, best of each")
    for count in 0...2 { _ = run(count) }
    var best = [Double](repeating: .infinity, count: 3)
    for _ in 0..<rounds { for count in 0...2 { best[count] = min(best[count], run(count)) } }
    for count in 0...2 {
        let extra = count == 0 ? "" : String(format: "  +%.1f%%", (best[count] / best[0] - 1) * 100)
        print(String(format: "%-34@ %8.3f s", (count == 0 ? "SD 1.5 UNet, 64² latents, batch 2" : "  with \(count) nested subject(s)") as NSString, best[count]) + extra)
    }
}
