import Testing
@testable import NestEngine

/// Both stride-1 convolution paths (whole kernels unfolded in the OIHW
/// weight's (C, kh, kw) order, Winograd) must equal a plain loop over the
/// definition, forward and for the input gradient, at small-image, large-
/// batch shapes whose unfolded tiles span several images.
@Suite struct ConvPathTests {
    /// out[n, y, x, o] = b[o] + Σ_{ky, kx, c} x[n, y + ky - pt, x + kx - pl, c] · w[o, c, ky, kx]
    func reference(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, pad: Int) -> [Double] {
        let (n, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, k) = (w.shape[0], w.shape[2])
        let ho = h + 2 * pad - k + 1, wo = wd + 2 * pad - k + 1
        let xs = x.array, ws = w.array, bs = bias?.array
        var out = [Double](repeating: 0, count: n * ho * wo * o)
        for b in 0..<n { for y in 0..<ho { for xo in 0..<wo { for oc in 0..<o {
            var sum = Double(bs?[oc] ?? 0)
            for ky in 0..<k { for kx in 0..<k {
                let iy = y + ky - pad, ix = xo + kx - pad
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                for ic in 0..<c { sum += Double(xs[((b * h + iy) * wd + ix) * c + ic]) * Double(ws[((oc * c + ic) * k + ky) * k + kx]) }
            } }
            out[((b * ho + y) * wo + xo) * o + oc] = sum
        } } } }
        return out
    }

    @Test func smallImagesLargeBatchMatchTheDefinition() {
        for (n, size, c, o) in [(8, 4, 24, 16), (8, 8, 16, 20), (6, 5, 9, 7), (1, 4, 8, 8)] {
            let x = Tensor.randn([n, size, size, c], seed: UInt64(size)), w = Tensor.randn([o, c, 3, 3], seed: 2, std: 0.2)
            let bias = Tensor.randn([o], seed: 3)
            let want = reference(x, w, bias, pad: 1)
            for winograd in [false, true] {
                let got = ConvolutionAlgorithm.with(winograd: winograd) { F.conv2d(x, weight: w, bias: bias, padding: 1).array }
                let worst = zip(got, want).map { abs(Double($0) - $1) }.max() ?? .infinity
                #expect(got.count == want.count && worst < 1e-4, "\(n)×\(size)²×\(c)→\(o) winograd \(winograd): off by \(worst)")
            }
            // The input gradient is itself a stride-1 convolution of the same
            // small images: of Σ conv(x) · s, against the sum written out.
            let s = Tensor.randn([n, size, size, o], seed: 9)
            let xi = Tensor(x.array, shape: x.shape, requiresGrad: true)
            Autograd.withGrad { (F.conv2d(xi, weight: w, padding: 1) * s).sum().backward() }
            // d/dx[b, iy, ix, ic] = Σ_{ky, kx, oc} s[b, iy - ky + 1, ix - kx + 1, oc] · w[oc, ic, ky, kx]
            let ss = s.array, ws = w.array, gx = xi.grad!.array
            var worst = 0.0
            for b in 0..<n { for iy in 0..<size { for ix in 0..<size { for ic in 0..<c {
                var sum = 0.0
                for ky in 0..<3 { for kx in 0..<3 {
                    let y = iy - ky + 1, xo = ix - kx + 1
                    guard y >= 0, y < size, xo >= 0, xo < size else { continue }
                    for oc in 0..<o { sum += Double(ss[((b * size + y) * size + xo) * o + oc]) * Double(ws[((oc * c + ic) * 3 + ky) * 3 + kx]) }
                } }
                worst = max(worst, abs(sum - Double(gx[((b * size + iy) * size + ix) * c + ic])))
            } } } }
            #expect(worst < 1e-4, "\(n)×\(size)²×\(c)→\(o) input gradient off by \(worst)")
        }
    }
}
