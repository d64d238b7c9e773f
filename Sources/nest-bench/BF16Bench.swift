import Foundation
import NestEngine
import NestModels

/// `nest-bench bf16 [--size S] [--rounds N]`: the SD 1.5 UNet with float32
/// weights and the same UNet with bfloat16 weights (`storeWeightsAsBFloat16`),
/// called alternately in one process (the VM's speed drifts between
/// processes), and how far the bfloat16 output is from the float32 one.
func bf16Bench(arguments args: [String]) {
    func value(_ flag: String) -> Int? { args.firstIndex(of: flag).flatMap { Int(args[$0 + 1]) } }
    let size = value("--size") ?? 64, rounds = value("--rounds") ?? 3
    let config = try! UNet2DConditionConfig.decode(benchConfig("sd15_unet.json"), name: "sd15")
    let full = UNet2DConditionModel(config: config, seed: 1), narrow = UNet2DConditionModel(config: config, seed: 1)
    try! narrow.load(from: TensorDictionary(Dictionary(uniqueKeysWithValues: full.checkpointTensors().map { ($0.name, $0.tensor) })))
    full.freeze()
    narrow.freeze()
    if args.contains("--half") { narrow.storeWeightsAsHalf() } else if !args.contains("--same") { narrow.storeWeightsAsBFloat16() }
    let x = Tensor.randn([2, size, size, 4], seed: 2), context = Tensor.randn([2, 77, 768], seed: 3)
    var outputs: [Tensor] = []
    var times: [[Double]] = [[], [], []]
    for round in 0...rounds {
        // float32; bfloat16; bfloat16 linear layers with float32 attention.
        for (i, (unet, attention)) in [(full, true), (narrow, true), (narrow, false)].enumerated() {
            var y: Tensor? = nil
            let t = AttentionKernel.with(bfloat16: attention) {
                seconds { y = unet(sample: x, timestep: [999, 999], encoderHiddenStates: context) }
            }
            if round == 0 { outputs.append(y!) } else { times[i].append(t) }
        }
    }
    let (a, b) = (outputs[0].array, outputs[1].array)
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        diff += d * d
        norm += Double(a[i]) * Double(a[i])
    }
    let (f, n, linearOnly) = (times[0].min()!, times[1].min()!, times[2].min()!)
    print(String(format: "SD 1.5 UNet %d²: float32 %.3f s, bfloat16 %.3f s (%.2f×; with float32 attention %.3f s); relative L2 difference %.2e",
                 size, f, n, n / f, linearOnly, (diff / norm).squareRoot()))
}
