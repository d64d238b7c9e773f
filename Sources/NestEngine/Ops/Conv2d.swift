/// 2-D convolution on channels-last inputs with PyTorch's weight layout.
///
/// x: [N, H, W, C]; weight: [O, C, kh, kw] (OIHW, as checkpoints store it, so
/// a loaded weight is the file's own bytes); output [N, Ho, Wo, O]. A 1×1
/// stride-1 convolution is one GEMM. Any other kernel runs as tiles of
/// output pixels: each worker unfolds its tile (im2col, in the weight's
/// (C, kh, kw) order) into a private buffer of bounded size and multiplies it
/// by the weights, so no whole-image unfolded buffer ever exists.

struct ConvGeometry {
    let n, h, w, c, o, kh, kw, stride: Int
    let padTop, padLeft, padBottom, padRight: Int
    var ho: Int { (h + padTop + padBottom - kh) / stride + 1 }
    var wo: Int { (w + padLeft + padRight - kw) / stride + 1 }
    var k: Int { kh * kw * c }
    var isPointwise: Bool { kh == 1 && kw == 1 && stride == 1 && padTop == 0 && padLeft == 0 && padBottom == 0 && padRight == 0 }

    /// The C floats of input pixel (iy, ix) of one NHWC `image`, or `zero` (C zeros) where
    /// (iy, ix) falls in the padding: the Winograd tiles read their inputs through this.
    @inline(__always)
    func pixel(_ image: UnsafePointer<Float>, _ iy: Int, _ ix: Int, zero: UnsafePointer<Float>) -> UnsafePointer<Float> {
        iy >= 0 && iy < h && ix >= 0 && ix < w ? image + (iy * w + ix) * c : zero
    }
}

/// Upper bound on one worker's unfolded tile, in floats (8 MiB).
let convTileFloats = 1 << 21

/// Rows per tile and tile count, chosen so every worker gets equal work.
func convTiling(rows: Int, k: Int) -> (tileRows: Int, tiles: Int) {
    let maxRows = max(16, convTileFloats / max(k, 1))
    let workers = Threads.count
    var tiles = (rows + maxRows - 1) / maxRows
    tiles = (tiles + workers - 1) / workers * workers
    tiles = min(tiles, max(1, rows / 8))
    let tileRows = (rows + tiles - 1) / tiles
    return (tileRows, (rows + tileRows - 1) / tileRows)
}

/// Unfolds output pixels `rows` into `col` ([rows.count, C·kh·kw]), each
/// row in (C, kh, kw) order: the order of an OIHW weight's input dimensions,
/// so one GEMM against the weight as stored computes the convolution. Each
/// row is written front to back while the kh·kw input pixels under the
/// kernel are read side by side, channel by channel.
@inline(__always)
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, rows: Range<Int>, col: UnsafeMutablePointer<Float>) {
    let c = g.c, k = g.k, hw = g.ho * g.wo, taps = g.kh * g.kw
    let zero = UnsafeMutablePointer<Float>.allocate(capacity: max(c, 1))
    zero.initialize(repeating: 0, count: max(c, 1))
    let taken = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: taps)
    defer { zero.deallocate(); taken.deallocate() }
    for (t, r) in rows.enumerated() {
        let img = r / hw, rem = r % hw
        let oy = rem / g.wo, ox = rem % g.wo
        let image = x + img * g.h * g.w * c
        let iy0 = oy * g.stride - g.padTop, ix0 = ox * g.stride - g.padLeft
        for ky in 0..<g.kh {
            for kx in 0..<g.kw { taken[ky * g.kw + kx] = g.pixel(image, iy0 + ky, ix0 + kx, zero: zero) }
        }
        unfoldPixels(taken, taps: taps, channels: c, into: col + t * k)
    }
}

/// dst[ch·taps + tap] = pixels[tap][ch]: one unfolded row from its kernel's input pixels.
@inline(__always)
private func unfoldPixels(_ pixels: UnsafeMutablePointer<UnsafePointer<Float>>, taps: Int, channels c: Int,
                          into dst: UnsafeMutablePointer<Float>) {
    if taps == 9 {
        // 3×3 kernels (nearly every convolution of a diffusion model), spelled out.
        let p0 = pixels[0], p1 = pixels[1], p2 = pixels[2], p3 = pixels[3], p4 = pixels[4]
        let p5 = pixels[5], p6 = pixels[6], p7 = pixels[7], p8 = pixels[8]
        for ch in 0..<c {
            let d = dst + ch * 9
            d[0] = p0[ch]; d[1] = p1[ch]; d[2] = p2[ch]; d[3] = p3[ch]; d[4] = p4[ch]
            d[5] = p5[ch]; d[6] = p6[ch]; d[7] = p7[ch]; d[8] = p8[ch]
        }
        return
    }
    for ch in 0..<c {
        let d = dst + ch * taps
        for tap in 0..<taps { d[tap] = pixels[tap][ch] }
    }
}

func conv2dForwardKernel(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                         _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) {
    if ConvolutionAlgorithm.winogradApplies(g) {
        if ConvolutionAlgorithm.winogradTileSize(g) == 4 {
            conv2dWinograd4Forward(x, weight, bias, g, out)
        } else {
            conv2dWinogradForward(x, weight, bias, g, out)
        }
        return
    }
    let rows = g.n * g.ho * g.wo
    if let bias {
        parallelRanges(rows, grain: 256) { r in for i in r { (out + i * g.o).update(from: bias, count: g.o) } }
    }
    let beta: Float = bias == nil ? 0 : 1
    if g.isPointwise {
        BLAS.gemm(transB: true, m: rows, n: g.o, k: g.c, a: x, lda: g.c, b: weight, ldb: g.c, beta: beta, c: out, ldc: g.o)
        return
    }
    let (tileRows, tiles) = convTiling(rows: rows, k: g.k)
    let buffers = ScratchBuffers(count: workerCount(tiles), floats: tileRows * g.k)
    _ = parallelWorkers(tiles) { worker, tileRange in
        let col = buffers[worker]
        for tile in tileRange {
            let r0 = tile * tileRows, r1 = min(rows, r0 + tileRows)
            im2col(x, g, rows: r0..<r1, col: col)
            BLAS.gemmSerial(transB: true, m: r1 - r0, n: g.o, k: g.k, a: col, lda: g.k, b: weight, ldb: g.k,
                            beta: beta, c: out + r0 * g.o, ldc: g.o)
        }
    }
}

/// Per-worker scratch memory, freed when the value goes away.
final class ScratchBuffers {
    let storage: [Storage]
    init(count: Int, floats: Int, zeroed: Bool = false) {
        storage = (0..<max(count, 1)).map { _ in Storage(count: floats, zeroed: zeroed) }
    }
    subscript(i: Int) -> UnsafeMutablePointer<Float> { storage[i].pointer }
}

extension F {
    /// Convolution with symmetric padding (the PyTorch `padding=` argument).
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: (padding, padding, padding, padding))
    }

    /// Convolution with explicit (top, left, bottom, right) padding.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int,
                              padding: (top: Int, left: Int, bottom: Int, right: Int)) -> Tensor {
        precondition(x.rank == 4, "conv2d input must be NHWC, got \(x.shape)")
        precondition(weight.rank == 4 && weight.shape[1] == x.shape[3],
                     "conv2d weight \(weight.shape) must be [O, \(x.shape[3]), kh, kw]")
        precondition(stride >= 1, "conv2d stride must be positive")
        let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], c: x.shape[3], o: weight.shape[0],
                             kh: weight.shape[2], kw: weight.shape[3], stride: stride,
                             padTop: padding.top, padLeft: padding.left, padBottom: padding.bottom, padRight: padding.right)
        precondition(g.ho > 0 && g.wo > 0, "conv2d: kernel \(g.kh)×\(g.kw) larger than padded input \(x.shape)")
        if let bias { precondition(bias.count == g.o, "conv2d bias \(bias.shape) for \(g.o) outputs") }
        let out = Tensor(uninitialized: [g.n, g.ho, g.wo, g.o])
        conv2dForwardKernel(x.data, weight.data, bias?.data, g, out.data)
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return out.recorded("conv2d", inputs) { gy in
            let gx = x.needsGrad ? conv2dInputGrad(gy, weight: weight, g) : nil
            let gw = weight.needsGrad ? conv2dWeightGrad(gy, x: x, g) : nil
            let gb = bias.map { b in b.needsGrad ? gy.reshaped([g.n * g.ho * g.wo, g.o]).sumToShape([g.o]).reshaped(b.shape) : nil } ?? nil
            return bias == nil ? [gx, gw] : [gx, gw, gb]
        }
    }
}

/// dL/dx is a stride-1 convolution of the (stride-dilated) output gradient
/// with the spatially flipped, channel-transposed kernel.
func conv2dInputGrad(_ gy: Tensor, weight: Tensor, _ g: ConvGeometry) -> Tensor {
    precondition(g.padTop <= g.kh - 1 && g.padLeft <= g.kw - 1 && g.padBottom <= g.kh - 1 && g.padRight <= g.kw - 1,
                 "conv2d backward supports padding up to kernel size - 1")
    // Flipped kernel: W'[c, o, ky, kx] = W[o, c, kh-1-ky, kw-1-kx]. Each
    // (o, c) pair's taps are contiguous on both sides, so the transpose
    // moves whole kernels.
    let wt = Tensor(uninitialized: [g.c, g.o, g.kh, g.kw])
    let src = UnsafePointer(weight.data), dst = wt.data, taps = g.kh * g.kw
    parallelRanges(g.c, grain: max(1, 4096 / max(g.o * taps, 1))) { channels in
        for c in channels {
            for o in 0..<g.o {
                let from = src + (o * g.c + c) * taps, to = dst + (c * g.o + o) * taps
                for t in 0..<taps { to[t] = from[taps - 1 - t] }
            }
        }
    }
    var grad = gy
    let hd = (g.ho - 1) * g.stride + 1, wd = (g.wo - 1) * g.stride + 1
    if g.stride > 1 {
        grad = Tensor(zeros: [g.n, hd, wd, g.o])
        let s = gy.data, d = grad.data
        for img in 0..<g.n { for oy in 0..<g.ho { for ox in 0..<g.wo {
            (d + ((img * hd + oy * g.stride) * wd + ox * g.stride) * g.o).update(from: s + ((img * g.ho + oy) * g.wo + ox) * g.o, count: g.o)
        } } }
    }
    let back = ConvGeometry(n: g.n, h: hd, w: wd, c: g.o, o: g.c, kh: g.kh, kw: g.kw, stride: 1,
                            padTop: g.kh - 1 - g.padTop, padLeft: g.kw - 1 - g.padLeft,
                            padBottom: g.h + g.padTop - hd, padRight: g.w + g.padLeft - wd)
    precondition(back.ho == g.h && back.wo == g.w, "conv2d backward geometry mismatch")
    let gx = Tensor(uninitialized: [g.n, g.h, g.w, g.c])
    conv2dForwardKernel(grad.data, wt.data, nil, back, gx.data)
    return gx
}

/// dL/dW = Σ over tiles of dYᵀ · unfold(x), with one accumulator per worker;
/// the unfolded columns' (C, kh, kw) order makes the product OIHW.
func conv2dWeightGrad(_ gy: Tensor, x: Tensor, _ g: ConvGeometry) -> Tensor {
    let rows = g.n * g.ho * g.wo
    let gw = Tensor(zeros: [g.o, g.c, g.kh, g.kw])
    if g.isPointwise {
        BLAS.gemm(transA: true, m: g.o, n: g.c, k: rows, a: gy.data, lda: g.o, b: x.data, ldb: g.c, c: gw.data, ldc: g.c)
        return gw
    }
    let (tileRows, tiles) = convTiling(rows: rows, k: g.k)
    let workers = workerCount(tiles)
    let cols = ScratchBuffers(count: workers, floats: tileRows * g.k)
    let partial = ScratchBuffers(count: workers, floats: g.o * g.k, zeroed: true)
    let xp = UnsafePointer(x.data), gyp = UnsafePointer(gy.data)
    _ = parallelWorkers(tiles) { worker, tileRange in
        for tile in tileRange {
            let r0 = tile * tileRows, r1 = min(rows, r0 + tileRows)
            im2col(xp, g, rows: r0..<r1, col: cols[worker])
            BLAS.gemmSerial(transA: true, m: g.o, n: g.k, k: r1 - r0, a: gyp + r0 * g.o, lda: g.o,
                            b: cols[worker], ldb: g.k, beta: 1, c: partial[worker], ldc: g.k)
        }
    }
    for w in 0..<workers {
        let p = partial[w], d = gw.data
        for i in 0..<(g.o * g.k) { d[i] += p[i] }
    }
    return gw
}
