/// 2-D convolution on channels-last tensors.
///
/// x: [N, H, W, C]; weight: [O, kh, kw, C] (PyTorch's OIHW transposed at
/// load); output [N, Ho, Wo, O]. A 1×1 stride-1 convolution is one GEMM. Any
/// other kernel runs as tiles of output pixels: each worker unfolds its tile
/// (im2col) into a private buffer of bounded size and multiplies it by the
/// weights, so no whole-image unfolded buffer ever exists.

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

/// Unfolds output pixels [r0, r1) into `col` ([r1 - r0, kh·kw·C]).
@inline(__always)
func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, rows: Range<Int>, col: UnsafeMutablePointer<Float>) {
    let c = g.c, k = g.k, hw = g.ho * g.wo
    for (t, r) in rows.enumerated() {
        let img = r / hw, rem = r % hw
        let oy = rem / g.wo, ox = rem % g.wo
        let base = x + img * g.h * g.w * c
        var dst = col + t * k
        let iy0 = oy * g.stride - g.padTop, ix0 = ox * g.stride - g.padLeft
        for ky in 0..<g.kh {
            let iy = iy0 + ky
            if iy < 0 || iy >= g.h {
                dst.update(repeating: 0, count: g.kw * c)
                dst += g.kw * c
                continue
            }
            let rowBase = base + iy * g.w * c
            if ix0 >= 0 && ix0 + g.kw <= g.w {
                // The whole kernel row is inside the image: one contiguous copy.
                dst.update(from: rowBase + ix0 * c, count: g.kw * c)
                dst += g.kw * c
            } else {
                for kx in 0..<g.kw {
                    let ix = ix0 + kx
                    if ix < 0 || ix >= g.w { dst.update(repeating: 0, count: c) } else { dst.update(from: rowBase + ix * c, count: c) }
                    dst += c
                }
            }
        }
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
    if g.stride == 1 && g.kh > 1
        && (g.ho * g.wo >= ConvolutionAlgorithm.rowUnfoldMinimumPixels.load(ordering: .relaxed) || tileRows < 2 * g.ho * g.wo) {
        conv2dRowUnfoldForward(x, weight, g, beta: beta, out)
        return
    }
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

/// Stride-1 convolution that unfolds only along x: row (iy, ox) of the
/// buffer holds the kw·C inputs under kernel row iy at output column ox.
/// Output rows oy0..<oy1 then equal Σ_ky U[(oy0+ky)·Wo ..< (oy1+ky)·Wo] · W_kyᵀ,
/// kh GEMMs over contiguous slices, with a buffer kh times smaller than im2col's.
func conv2dRowUnfoldForward(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ g: ConvGeometry,
                            beta: Float, _ out: UnsafeMutablePointer<Float>) {
    let rowK = g.kw * g.c
    let rowFloats = g.wo * rowK
    // Output rows per tile: bounded buffer, and enough tiles to feed every worker.
    // Tiles of about 512 output pixels (enough rows for efficient GEMMs) are
    // handed out dynamically, so a slow core does not stall the others.
    let maxRows = max(1, min(convTileFloats / rowFloats - (g.kh - 1), (512 + g.wo - 1) / g.wo))
    var tilesPerImage = (g.ho + maxRows - 1) / maxRows
    let tileRows = (g.ho + tilesPerImage - 1) / tilesPerImage
    tilesPerImage = (g.ho + tileRows - 1) / tileRows
    let tiles = g.n * tilesPerImage
    let buffers = ScratchBuffers(count: min(Threads.count, tiles), floats: (tileRows + g.kh - 1) * rowFloats)
    parallelTasks(tiles) { worker, tile in
        let u = buffers[worker]
        do {
            let img = tile / tilesPerImage
            let oy0 = (tile % tilesPerImage) * tileRows, oy1 = min(g.ho, oy0 + tileRows)
            let image = x + img * g.h * g.w * g.c
            // Unfold input rows iy = oy0 - padTop ..< oy1 - padTop + kh - 1.
            for (r, iy) in ((oy0 - g.padTop)..<(oy1 - g.padTop + g.kh - 1)).enumerated() {
                let dstRow = u + r * rowFloats
                if iy < 0 || iy >= g.h { dstRow.update(repeating: 0, count: rowFloats); continue }
                let src = image + iy * g.w * g.c
                for ox in 0..<g.wo {
                    var dst = dstRow + ox * rowK
                    let ix0 = ox - g.padLeft
                    if ix0 >= 0 && ix0 + g.kw <= g.w {
                        dst.update(from: src + ix0 * g.c, count: rowK)
                    } else {
                        for kx in 0..<g.kw {
                            let ix = ix0 + kx
                            if ix < 0 || ix >= g.w { dst.update(repeating: 0, count: g.c) } else { dst.update(from: src + ix * g.c, count: g.c) }
                            dst += g.c
                        }
                    }
                }
            }
            let m = (oy1 - oy0) * g.wo
            let c = out + ((img * g.ho) + oy0) * g.wo * g.o
            for ky in 0..<g.kh {
                BLAS.gemmSerial(transB: true, m: m, n: g.o, k: rowK, a: u + ky * rowFloats, lda: rowK,
                                b: weight + ky * rowK, ldb: g.k, beta: ky == 0 ? beta : 1, c: c, ldc: g.o)
            }
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
        precondition(weight.rank == 4 && weight.shape[3] == x.shape[3],
                     "conv2d weight \(weight.shape) must be [O, kh, kw, \(x.shape[3])]")
        precondition(stride >= 1, "conv2d stride must be positive")
        let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], c: x.shape[3], o: weight.shape[0],
                             kh: weight.shape[1], kw: weight.shape[2], stride: stride,
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
    // Flipped kernel: W'[c, ky, kx, o] = W[o, kh-1-ky, kw-1-kx, c].
    let wt = Tensor(uninitialized: [g.c, g.kh, g.kw, g.o])
    // A transpose per kernel tap in 16×16 tiles of (input, output) channels:
    // each tile reads 16 cache lines and writes 16 whole ones (a plain loop
    // here cost 4% of a training step, a 16-channel-block one 3.9%).
    let src = UnsafePointer(weight.data), dst = wt.data, taps = g.kh * g.kw
    parallelRanges((g.c + 15) / 16) { blocks in
        for block in blocks {
            let c0 = block * 16, c1 = min(g.c, c0 + 16)
            for o0 in stride(from: 0, to: g.o, by: 16) {
                let o1 = min(g.o, o0 + 16)
                for t in 0..<taps {
                    let from = src + (taps - 1 - t) * g.c
                    for c in c0..<c1 {
                        let row = dst + (c * taps + t) * g.o
                        for o in o0..<o1 { row[o] = from[o * taps * g.c + c] }
                    }
                }
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

/// dL/dW = Σ over tiles of dYᵀ · unfold(x), with one accumulator per worker.
func conv2dWeightGrad(_ gy: Tensor, x: Tensor, _ g: ConvGeometry) -> Tensor {
    let rows = g.n * g.ho * g.wo
    let gw = Tensor(zeros: [g.o, g.kh, g.kw, g.c])
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
