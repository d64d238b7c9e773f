import Foundation
import NestEngine

/// `nest-bench optimizer [--rounds N]`: one AdamW update and one gradient
/// clip over the miniature world UNet's parameters, the AVX-512 loops against
/// the Swift ones, switched alternately in one process, beside the time of the
/// whole training step they belong to (train-unet).
func optimizerBench(arguments args: [String]) {
    guard VectorKernels.available else { print("nest-bench optimizer: this CPU has no AVX-512"); return }
    let rounds = args.firstIndex(of: "--rounds").flatMap { Int(args[$0 + 1]) } ?? 5
    let unet = worldUNet("optimizer")
    unet.unfreeze()
    let parameters = unet.trainableParameters
    for (i, p) in parameters.enumerated() { p.tensor.grad = Tensor.randn(p.tensor.shape, seed: UInt64(i), std: 0.01) }
    let optimizer = AdamW(parameters: parameters, config: .init(learningRate: 1e-4))
    let count = parameters.reduce(0) { $0 + $1.tensor.count }
    print("nest-bench optimizer: \(Threads.count) thread(s), \(count) parameters in \(parameters.count) tensors; best of \(rounds) interleaved rounds")
    let jobs: [(String, () -> Void)] = [
        ("AdamW update", { optimizer.update(learningRate: 1e-4) }),
        ("clip gradient norm", { clipGradNorm(parameters.map(\.tensor), maxNorm: 1e9) }),
    ]
    for (label, body) in jobs {
        let best = bestOffAndOn(rounds: rounds, switch: { VectorKernels.useAVX512 = $0 }, body)
        print(String(format: "%@: Swift loop %.2f ms, AVX-512 %.2f ms (%.2f×)", label, best.off * 1e3, best.on * 1e3, best.off / best.on))
    }
    let step = makeSwiftCase("train-unet")
    print(String(format: "whole training step (train-unet, float32): %.1f ms", best(rounds) { step() } * 1e3))
}
