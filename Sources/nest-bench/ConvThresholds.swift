import Foundation
import NestEngine

/// `nest-bench conv-thresholds [--case NAME] [--rounds R]`: one compare case
/// (default train-step) under several settings of the convolution-algorithm
/// thresholds, interleaved round by round in one process (best of each), so
/// the machine's drift between processes does not decide the choice.
func convThresholds(arguments: [String]) {
    if arguments.contains("--shapes") { convThresholdShapes(); return }
    let name = arguments.firstIndex(of: "--case").map { arguments[$0 + 1] } ?? "train-step"
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 5
    let body = makeSwiftCase(name)
    let settings: [(rowUnfold: Int, winograd: Int)] = [(0, 512), (256, 512), (256, 128), (256, 256), (0, 128)]
    func run(_ s: (rowUnfold: Int, winograd: Int)) -> Double {
        ConvolutionAlgorithm.rowUnfoldMinimumPixels.store(s.rowUnfold, ordering: .relaxed)
        ConvolutionAlgorithm.winogradMinimumTiles.store(s.winograd, ordering: .relaxed)
        return seconds(body)
    }
    print("nest-bench conv-thresholds: \(name), \(Threads.count) thread(s), \(rounds) rounds, best of each")
    for s in settings { _ = run(s) }
    var best = [Double](repeating: .infinity, count: settings.count)
    for _ in 0..<rounds { for (i, s) in settings.enumerated() { best[i] = min(best[i], run(s)) } }
    for (i, s) in settings.enumerated() {
        print(String(format: "row unfold from %4d px, Winograd from %4d tiles: %8.4f s  (%.3f× the first)",
                     s.rowUnfold, s.winograd, best[i], best[i] / best[0]))
    }
}

/// The same settings per convolution shape (the world UNet's, batch 8, and
/// SD 1.5's low levels, batch 2), 30 interleaved rounds, best of each.
func convThresholdShapes() {
    let settings: [(rowUnfold: Int, winograd: Int)] = [(0, 512), (256, 512), (256, 128)]
    let shapes = [(8, 8, 128, 128), (8, 8, 192, 192), (8, 8, 320, 128), (8, 4, 192, 192), (8, 4, 384, 192), (8, 16, 64, 64),
                  (2, 8, 1280, 1280), (2, 16, 640, 640), (2, 4, 1280, 1280)]
    for (n, size, c, o) in shapes {
        let x = Tensor.randn([n, size, size, c], seed: 3), w = Tensor.randn([o, 3, 3, c], seed: 4, std: 0.02)
        var best = [Double](repeating: .infinity, count: settings.count)
        let rounds = c * o > 500_000 ? 6 : 30
        for round in 0...rounds {
            for (i, s) in settings.enumerated() {
                ConvolutionAlgorithm.rowUnfoldMinimumPixels.store(s.rowUnfold, ordering: .relaxed)
                ConvolutionAlgorithm.winogradMinimumTiles.store(s.winograd, ordering: .relaxed)
                let t = seconds { _ = F.conv2d(x, weight: w, stride: 1, padding: 1) }
                if round > 0 { best[i] = min(best[i], t) }
            }
        }
        print(String(format: "%d×%d×%d×%d→%d: ", n, size, size, c, o)
              + best.map { String(format: "%.3f ms (%.2f)", $0 * 1e3, $0 / best[0]) }.joined(separator: "  "))
    }
}
