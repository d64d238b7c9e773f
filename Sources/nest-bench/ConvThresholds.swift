import Foundation
import NestEngine

/// `nest-bench conv-thresholds [--case NAME] [--rounds R]`: one compare case
/// (default train-step) under several settings of the convolution-algorithm
/// threshold (Winograd's minimum tile count), interleaved round by round in one process (best of each), so
/// the machine's drift between processes does not decide the choice.
func convThresholds(arguments: [String]) {
    if arguments.contains("--shapes") { convThresholdShapes(); return }
    let name = arguments.firstIndex(of: "--case").map { arguments[$0 + 1] } ?? "train-step"
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 5
    let body = makeSwiftCase(name)
    let settings = [512, 128, 256]
    func run(_ tiles: Int) -> Double {
        ConvolutionAlgorithm.winogradMinimumTiles.store(tiles, ordering: .relaxed)
        return seconds(body)
    }
    print("nest-bench conv-thresholds: \(name), \(Threads.count) thread(s), \(rounds) rounds, best of each")
    for s in settings { _ = run(s) }
    var best = [Double](repeating: .infinity, count: settings.count)
    for _ in 0..<rounds { for (i, s) in settings.enumerated() { best[i] = min(best[i], run(s)) } }
    for (i, s) in settings.enumerated() {
        print(String(format: "Winograd from %4d tiles: %8.4f s  (%.3f× the first)", s, best[i], best[i] / best[0]))
    }
}

/// The same settings per convolution shape (the world UNet's, batch 8, and
/// SD 1.5's low levels, batch 2), 30 interleaved rounds, best of each.
func convThresholdShapes() {
    let settings = [512, 128]
    let shapes = [(8, 8, 128, 128), (8, 8, 192, 192), (8, 8, 320, 128), (8, 4, 192, 192), (8, 4, 384, 192), (8, 16, 64, 64),
                  (2, 8, 1280, 1280), (2, 16, 640, 640), (2, 4, 1280, 1280)]
    for (n, size, c, o) in shapes {
        let x = Tensor.randn([n, size, size, c], seed: 3), w = Tensor.randn([o, c, 3, 3], seed: 4, std: 0.02)
        var best = [Double](repeating: .infinity, count: settings.count)
        let rounds = c * o > 500_000 ? 6 : 30
        for round in 0...rounds {
            for (i, s) in settings.enumerated() {
                ConvolutionAlgorithm.winogradMinimumTiles.store(s, ordering: .relaxed)
                let t = seconds { _ = F.conv2d(x, weight: w, stride: 1, padding: 1) }
                if round > 0 { best[i] = min(best[i], t) }
            }
        }
        print(String(format: "%d×%d×%d×%d→%d: ", n, size, size, c, o)
              + best.map { String(format: "%.3f ms (%.2f)", $0 * 1e3, $0 / best[0]) }.joined(separator: "  "))
    }
}

/// `nest-bench winograd4 [--case NAME] [--rounds R]`: F(4×4, 3×3) against
/// F(2×2, 3×3) per convolution shape (SD 1.5's and its VAE's levels, the world
/// UNet's), then on a whole compare case (default sd15-unet-64), interleaved
/// in one process, best of each.
func winograd4(arguments: [String]) {
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 3
    let threshold = ConvolutionAlgorithm.winograd4MinimumTiles.load(ordering: .relaxed)
    func on(_ four: Bool) { ConvolutionAlgorithm.winograd4MinimumTiles.store(four ? 1 : Int.max, ordering: .relaxed) }
    print("nest-bench winograd4: \(Threads.count) thread(s); F(2×2) vs F(4×4), best of interleaved rounds")
    let shapes = [(2, 64, 320, 320), (2, 32, 640, 640), (2, 32, 320, 640), (2, 16, 1280, 1280), (2, 16, 640, 640),
                  (1, 64, 512, 512), (1, 128, 256, 256), (8, 16, 64, 64), (8, 8, 128, 128)]
    for (n, size, c, o) in arguments.contains("--no-shapes") ? [] : shapes {
        let x = Tensor.randn([n, size, size, c], seed: 3), w = Tensor.randn([o, c, 3, 3], seed: 4, std: 0.02)
        var best = [Double.infinity, .infinity]
        let r = c * o * size * size > 100_000_000 ? 4 : 12
        for round in 0...r {
            for four in [false, true] {
                on(four)
                let t = seconds { _ = F.conv2d(x, weight: w, stride: 1, padding: 1) }
                if round > 0 { best[four ? 1 : 0] = min(best[four ? 1 : 0], t) }
            }
        }
        let flops = 2.0 * Double(n * size * size * c * o * 9)
        print(String(format: "%d×%d×%d×%d→%d: F(2×2) %.2f ms (%.0f GFLOP/s), F(4×4) %.2f ms (%.0f GFLOP/s), %.3f×",
                     n, size, size, c, o, best[0] * 1e3, flops / best[0] / 1e9, best[1] * 1e3, flops / best[1] / 1e9, best[1] / best[0]))
    }
    let name = arguments.firstIndex(of: "--case").map { arguments[$0 + 1] } ?? "sd15-unet-64"
    let body = makeSwiftCase(name)
    let settings = [Int.max, 512, 256, 128]
    var best = [Double](repeating: .infinity, count: settings.count)
    for round in 0...rounds {
        for (i, tiles) in settings.enumerated() {
            ConvolutionAlgorithm.winograd4MinimumTiles.store(tiles, ordering: .relaxed)
            let t = seconds(body)
            if round > 0 { best[i] = min(best[i], t) }
        }
    }
    for (i, tiles) in settings.enumerated() {
        print(String(format: "%@: F(4×4) from %@ tiles: %.3f s (%.3f× F(2×2) only)", name,
                     tiles == Int.max ? "never" : "\(tiles)", best[i], best[i] / best[0]))
    }
    ConvolutionAlgorithm.winograd4MinimumTiles.store(threshold, ordering: .relaxed)
}
