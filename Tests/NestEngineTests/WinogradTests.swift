import Testing
@testable import NestEngine

/// Winograd F(2×2, 3×3) and F(4×4, 3×3) must match the direct convolution
/// (same padding rules, odd sizes, partial tiles, bias or none) and its gradients.
@Suite(.serialized) struct WinogradTests {
    func both<T>(tile: Int = 2, _ body: () -> T) -> (winograd: T, direct: T) {
        // Task-local: tests running beside these keep their own algorithm.
        (ConvolutionAlgorithm.with(winograd: true) { ConvolutionAlgorithm.with(winogradTile: tile) { body() } },
         ConvolutionAlgorithm.with(winograd: false) { body() })
    }

    /// F(4×4)'s transforms have coefficients up to 8, so it rounds more than F(2×2).
    @Test(arguments: [(2, Float(2e-6)), (4, Float(3e-6))])
    func matchesDirectConvolution(tile: Int, tolerance: Float) {
        // (batch, height, width, in, out, padding (t, l, b, r), bias)
        let cases: [(Int, Int, Int, Int, Int, (Int, Int, Int, Int), Bool)] = [
            (32, 8, 8, 32, 48, (1, 1, 1, 1), true),
            (26, 7, 9, 40, 32, (1, 1, 1, 1), false),
            (86, 6, 7, 33, 35, (0, 0, 0, 0), true),
            (25, 11, 4, 64, 32, (2, 2, 2, 2), true),
            (32, 9, 9, 32, 32, (0, 0, 1, 1), false),
            (3, 40, 24, 96, 64, (1, 1, 1, 1), true),   // more tiles than one block
            (4, 33, 30, 48, 70, (1, 1, 1, 1), true),   // ≥ 256 tiles: F(4×4) on packed weight panels, partial panel
        ]
        for (n, h, w, c, o, pad, hasBias) in cases {
            let x = Tensor.randn([n, h, w, c], seed: UInt64(h * 100 + w))
            let weight = Tensor.randn([o, c, 3, 3], seed: 7, std: 0.1)
            let bias = hasBias ? Tensor.randn([o], seed: 8) : nil
            let g = ConvGeometry(n: n, h: h, w: w, c: c, o: o, kh: 3, kw: 3, stride: 1,
                                 padTop: pad.0, padLeft: pad.1, padBottom: pad.2, padRight: pad.3)
            #expect(ConvolutionAlgorithm.winogradApplies(g), "case \(n)×\(h)×\(w)×\(c)→\(o) should use Winograd")
            let r = both(tile: tile) { F.conv2d(x, weight: weight, bias: bias, stride: 1, padding: pad).array }
            #expect(r.winograd.count == r.direct.count)
            let scale = r.direct.map { abs($0) }.max()!
            let worst = zip(r.winograd, r.direct).map { abs($0 - $1) }.max()!
            print("winograd F(\(tile)×\(tile)) \(n)×\(h)×\(w)×\(c)→\(o): worst \(worst / (scale * Float(c).squareRoot())) of scale·√c")
            #expect(worst <= tolerance * scale * Float(c).squareRoot(), "\(n)×\(h)×\(w)×\(c)→\(o) pad \(pad): \(worst) of \(scale)")
        }
    }

    /// Wide F(4×4) convolutions run in passes over output channels (bounded
    /// transformed weights); the passes together must equal the direct result.
    @Test func winograd4OutputPassesMatchDirectConvolution() {
        let (n, h, w, c, o) = (2, 9, 10, 256, 480)
        #expect(winograd4OutputChunk(o: o, c: c) < o, "this case must take several passes")
        let x = Tensor.randn([n, h, w, c], seed: 5)
        let weight = Tensor.randn([o, c, 3, 3], seed: 6, std: 0.05), bias = Tensor.randn([o], seed: 7)
        let r = both(tile: 4) { F.conv2d(x, weight: weight, bias: bias, stride: 1, padding: 1).array }
        let scale = r.direct.map { abs($0) }.max()!
        let worst = zip(r.winograd, r.direct).map { abs($0 - $1) }.max()!
        #expect(worst <= 3e-6 * scale * Float(c).squareRoot(), "worst \(worst) of \(scale)")
    }

    /// Without the AVX-512 or AVX2 kernels the F(4×4) products go through
    /// sgemm on plain [O][C] weight planes instead of the packed panels: the
    /// same result either way.
    @Test func winograd4PathsAgree() {
        let x = Tensor.randn([4, 33, 30, 48], seed: 11)
        let weight = Tensor.randn([70, 48, 3, 3], seed: 12, std: 0.1), bias = Tensor.randn([70], seed: 13)
        func run() -> [Float] {
            ConvolutionAlgorithm.with(winograd: true) { ConvolutionAlgorithm.with(winogradTile: 4) {
                F.conv2d(x, weight: weight, bias: bias, stride: 1, padding: 1).array
            } }
        }
        let fast = run(), portable = VectorKernels.with(false) { run() }
        let scale = fast.map { abs($0) }.max()!
        let worst = zip(fast, portable).map { abs($0 - $1) }.max()!
        // Summation orders may differ (or not: sgemm's kernel may add in the same order), magnified by
        // the output transform: the bound of F(4×4) against direct.
        #expect(worst <= 3e-6 * scale * Float(48).squareRoot(), "worst \(worst) of \(scale)")
    }

    @Test(arguments: [2, 4]) func gradientsMatchDirectConvolution(tile: Int) {
        let x = Tensor.randn([24, 9, 10, 32], seed: 1), weight = Tensor.randn([40, 32, 3, 3], seed: 2, std: 0.1)
        let seed = Tensor.randn([24, 9, 10, 40], seed: 3)
        let r = both(tile: tile) { () -> [Float] in
            let xi = Tensor(x.array, shape: x.shape, requiresGrad: true)
            let wi = Tensor(weight.array, shape: weight.shape, requiresGrad: true)
            (F.conv2d(xi, weight: wi, padding: 1) * seed).sum().backward()
            return xi.grad!.array + wi.grad!.array
        }
        let worst = zip(r.winograd, r.direct).map { abs($0 - $1) }.max()!
        let scale = r.direct.map { abs($0) }.max()!
        #expect(worst <= 1e-5 * scale, "worst \(worst) of \(scale)")
    }

    @Test func smallChannelCountsAndFewTilesStayDirect() {
        let lowResolution = ConvGeometry(n: 2, h: 8, w: 8, c: 1280, o: 1280, kh: 3, kw: 3, stride: 1, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        #expect(!ConvolutionAlgorithm.winogradApplies(lowResolution))
        let g = ConvGeometry(n: 1, h: 64, w: 64, c: 4, o: 320, kh: 3, kw: 3, stride: 1, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        #expect(!ConvolutionAlgorithm.winogradApplies(g))
        let strided = ConvGeometry(n: 1, h: 64, w: 64, c: 320, o: 320, kh: 3, kw: 3, stride: 2, padTop: 0, padLeft: 0, padBottom: 1, padRight: 1)
        #expect(!ConvolutionAlgorithm.winogradApplies(strided))
        // SD 1.5 at 64² latents takes 4×4 tiles; the world UNet's 8×8 level at batch 8 keeps 2×2.
        let sd = ConvGeometry(n: 2, h: 64, w: 64, c: 320, o: 320, kh: 3, kw: 3, stride: 1, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        #expect(ConvolutionAlgorithm.winogradTileSize(sd) == 4)
        let world = ConvGeometry(n: 8, h: 8, w: 8, c: 128, o: 128, kh: 3, kw: 3, stride: 1, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        #expect(ConvolutionAlgorithm.winogradTileSize(world) == 2)
    }
}
