import Foundation
import NestEngine

/// `nest-bench avx2 [--case NAME] [--rounds N]`: the kernels built for AVX2
/// and FMA (`VectorKernels.useAVX2`) against the portable paths they replace,
/// switched alternately in one process (the VM's speed drifts between
/// processes): a 3×3 convolution at SD 1.5's first level, then a whole case
/// (default sd15-unet-32). Meaningful on CPUs without AVX-512, where the
/// AVX-512 kernels do not run.
func avx2Bench(arguments args: [String]) {
    guard VectorKernels.availableAVX2 else { print("nest-bench avx2: this CPU has no AVX2+FMA"); return }
    let rounds = args.firstIndex(of: "--rounds").flatMap { Int(args[$0 + 1]) } ?? 3
    let name = args.firstIndex(of: "--case").map { args[$0 + 1] } ?? "sd15-unet-32"
    print("nest-bench avx2: \(Threads.count) thread(s), AVX-512 \(VectorKernels.useAVX512 ? "on" : "off"); best of interleaved rounds")
    let x = Tensor.randn([2, 64, 64, 320], seed: 3), w = Tensor.randn([320, 320, 3, 3], seed: 4, std: 0.02)
    let conv = { _ = F.conv2d(x, weight: w, stride: 1, padding: 1) }
    for (label, body, r) in [("conv 3×3 2×64×64×320→320", conv, 2 * rounds), (name, makeSwiftCase(name), rounds)] {
        let best = bestOffAndOn(rounds: r, switch: { VectorKernels.useAVX2 = $0 }, body)
        print(String(format: "%@: portable %.3f s, AVX2 %.3f s (%.3f×)", label, best.off, best.on, best.on / best.off))
    }
}

/// Best times of `body` with a kernel switch off and on, alternated for
/// `rounds` rounds after one warm-up round (the VM's speed drifts, so the two
/// are measured side by side); leaves the switch on.
func bestOffAndOn(rounds: Int, switch set: (Bool) -> Void, _ body: () -> Void) -> (off: Double, on: Double) {
    var best = [Double.infinity, .infinity]
    for round in 0...rounds {
        for (i, on) in [false, true].enumerated() {
            set(on)
            let t = seconds(body)
            if round > 0 { best[i] = min(best[i], t) }
        }
    }
    set(true)
    return (best[0], best[1])
}
