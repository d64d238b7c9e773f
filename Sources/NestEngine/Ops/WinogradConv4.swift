import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// 3×3 stride-1 convolution by Winograd's F(4×4, 3×3) (Lavin & Gray's
/// interpolation points 0, ±1, ±2, ∞).
///
/// Each 4×4 block of output pixels comes from a 6×6 input tile with 36
/// products per (input, output) channel pair instead of 144 — four times
/// fewer, against F(2×2, 3×3)'s 2.25 — at the price of transforms with
/// coefficients up to 8 (a few float32 ulps more rounding, relative error
/// around 1e-6 of the output's scale at SD's channel counts, which the tests
/// bound). Used where the output has enough 4×4 tiles to pay for the larger
/// transformed weights (36/9 of their size, rebuilt per call); smaller
/// convolutions keep F(2×2) (see `ConvolutionAlgorithm.winogradTileSize`).
///
///     Bᵀ = [4  0 -5  0  1  0]    G = [ 1/4    0     0  ]    Aᵀ = [1 1  1 1  1 0]
///          [0 -4 -4  1  1  0]        [-1/6 -1/6  -1/6 ]         [0 1 -1 2 -2 0]
///          [0  4 -4 -1  1  0]        [-1/6  1/6  -1/6 ]         [0 1  1 4  4 0]
///          [0 -2 -1  2  1  0]        [1/24 1/12  1/6  ]         [0 1 -1 8 -8 1]
///          [0  2 -1 -2  1  0]        [1/24 -1/12 1/6  ]
///          [0  4  0 -5  0  1]        [  0    0     1  ]

/// Tiles handled together: their transformed inputs (36·T·C floats) and
/// products (36·T·O floats) live in a per-worker scratch buffer.
let winograd4TileBlock = 64

/// U = G g Gᵀ for every (output, input) channel pair: 36 planes, each
/// [O][C] or, with `packed`, in the 32-column panels of gemm_f32.c
/// ([O/32][C][32], so the GEMMs read it without copying; AVX-512 or AVX2).
/// `weight` points at the first of the `o` output channels wanted.
func winograd4Weights(_ weight: UnsafePointer<Float>, o: Int, c: Int, packed: Bool = false) -> Storage {
    if packed {
        let u = Storage(count: 36 * nest_f32_packed_floats(o, c))
        let panels = (o + 31) / 32
        let scratch = ScratchBuffers(count: min(Threads.count, panels), floats: 9 * c * 32)
        _ = parallelWorkers(panels) { worker, range in
            nest_winograd4_pack_weights(weight, o, c, range.lowerBound, range.upperBound, u.pointer, scratch[worker])
        }
        return u
    }
    let u = Storage(count: 36 * o * c)
    let up = u.pointer, plane = o * c
    let scratch = ScratchBuffers(count: Threads.count, floats: 27 * c)
    @inline(__always) func g6(_ a: Float, _ b: Float, _ d: Float) -> (Float, Float, Float, Float, Float, Float) {
        let s = a + d
        return (0.25 * a, -(s + b) / 6, -(s - b) / 6, a / 24 + b / 12 + d / 6, a / 24 - b / 12 + d / 6, d)
    }
    _ = parallelWorkers(o) { worker, range in
        let tmp = scratch[worker], base = tmp + 18 * c
        for oc in range {
            winogradKernelTapsFirst(weight + oc * 9 * c, c: c, into: base)
            // G·g over ky, for each kx: tmp[row][kx][:], row 0..<6.
            for kx in 0..<3 {
                let g0 = base + kx * c, g1 = base + (3 + kx) * c, g2 = base + (6 + kx) * c
                for ch in 0..<c {
                    let r = g6(g0[ch], g1[ch], g2[ch])
                    tmp[(0 * 3 + kx) * c + ch] = r.0; tmp[(1 * 3 + kx) * c + ch] = r.1
                    tmp[(2 * 3 + kx) * c + ch] = r.2; tmp[(3 * 3 + kx) * c + ch] = r.3
                    tmp[(4 * 3 + kx) * c + ch] = r.4; tmp[(5 * 3 + kx) * c + ch] = r.5
                }
            }
            // (G·g)·Gᵀ over kx.
            for row in 0..<6 {
                let t0 = tmp + (row * 3) * c, t1 = t0 + c, t2 = t1 + c
                let u0 = up + (row * 6) * plane + oc * c
                for ch in 0..<c {
                    let r = g6(t0[ch], t1[ch], t2[ch])
                    u0[ch] = r.0; u0[plane + ch] = r.1; u0[2 * plane + ch] = r.2
                    u0[3 * plane + ch] = r.3; u0[4 * plane + ch] = r.4; u0[5 * plane + ch] = r.5
                }
            }
        }
    }
    return u
}

/// Output channels per pass, so the transformed weights (36·O·C floats, four
/// times the weight) stay under 4 Mi floats: SD 1.5's 960→640 convolution
/// would otherwise hold 88 MB of them, more than the UNet's peak memory can
/// spare against PyTorch's. Each pass repeats the input transform, which costs
/// about 12 operations per input value against 2·O per value in the GEMMs.
func winograd4OutputChunk(o: Int, c: Int) -> Int {
    let fit = (4 << 20) / (36 * max(c, 1))
    return fit >= o ? o : max(16, fit / 16 * 16)
}

/// NEST_WINOGRAD_BLAS=1 sends the Winograd products through sgemm instead (for A/B timing).
let winograd4PackedGEMM = !EngineConfiguration.current.winogradThroughBLAS
/// Fewest tiles for the packed path (NEST_WINOGRAD_PACKED_TILES, for measuring).
let winograd4PackedMinimumTiles = EngineConfiguration.current.winogradPackedMinimumTiles

func conv2dWinograd4Forward(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                            _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) {
    FLOPCounter.add(2 * g.n * g.ho * g.wo * g.o * 9 * g.c)
    let chunk = winograd4OutputChunk(o: g.o, c: g.c)
    for o0 in stride(from: 0, to: g.o, by: chunk) {
        let count = min(chunk, g.o - o0)
        conv2dWinograd4Pass(x, weight + o0 * 9 * g.c, bias.map { $0 + o0 }, g, outputs: count, out + o0)
    }
}

/// One pass over every tile for `outputs` output channels; `out` points at
/// the first of them in the [N, Ho, Wo, O] output.
func conv2dWinograd4Pass(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                         _ g: ConvGeometry, outputs o: Int, _ out: UnsafeMutablePointer<Float>) {
    let c = g.c, rowStride = g.o
    let tilesY = (g.ho + 3) / 4, tilesX = (g.wo + 3) / 4
    let tilesPerImage = tilesY * tilesX, total = g.n * tilesPerImage
    // With AVX-512 or AVX2 and enough tiles the GEMMs read pre-packed weight
    // panels (gemm_f32.c, gemm_f32_avx2.c): no per-GEMM packing.
    let avx512 = VectorKernels.useAVX512
    let packed = (avx512 || VectorKernels.useAVX2) && winograd4PackedGEMM && total >= winograd4PackedMinimumTiles
    let u = winograd4Weights(weight, o: o, c: c, packed: packed)
    let up = UnsafePointer(u.pointer), uPlane = packed ? nest_f32_packed_floats(o, c) : o * c
    let tb = winograd4TileBlock
    forEachWinogradBlock(tiles: total, tileBlock: tb, planes: 36, c: c, o: o) { block in
        let v = block.v, m = block.m, tmp = block.tmp, t0 = block.first, count = block.count
        let vPlane = tb * c
        for t in 0..<count {
            let tile = t0 + t, img = tile / tilesPerImage, rem = tile % tilesPerImage
            let iy0 = (rem / tilesX) * 4 - g.padTop, ix0 = (rem % tilesX) * 4 - g.padLeft
            winograd4InputTile(x + img * g.h * g.w * c, g, iy0: iy0, ix0: ix0, zero: block.zero, tmp: tmp, v + t * c, vPlane: vPlane)
        }
        // 36 GEMMs: M[ξ] (count × O) = V[ξ] (count × C) · U[ξ]ᵀ.
        for xi in 0..<36 {
            if packed && avx512 {
                nest_f32_gemm_packed(count, o, c, v + xi * vPlane, c, up + xi * uPlane, m + xi * tb * o, o)
            } else if packed {
                nest_f32_gemm_packed_avx2(count, o, c, v + xi * vPlane, c, up + xi * uPlane, m + xi * tb * o, o)
            } else {
                BLAS.gemmSerial(transB: true, m: count, n: o, k: c, a: v + xi * vPlane, lda: c,
                                b: up + xi * uPlane, ldb: c, c: m + xi * tb * o, ldc: o, counted: false)
            }
        }
        // Output transform Y = Aᵀ M A, plus bias.
        let mPlane = tb * o
        for t in 0..<count {
            let tile = t0 + t, img = tile / tilesPerImage, rem = tile % tilesPerImage
            let oy0 = (rem / tilesX) * 4, ox0 = (rem % tilesX) * 4
            winograd4OutputTile(m + t * o, mPlane: mPlane, outputs: o, tmp: tmp, bias: bias,
                                row0: out + ((img * g.ho + oy0) * g.wo + ox0) * rowStride, rowStride: rowStride, lineStride: g.wo * rowStride,
                                rows: min(4, g.ho - oy0), width: min(4, g.wo - ox0))
        }
    }
}

/// The input transform of one tile, V = Bᵀ d B: the 6×6 input pixels from
/// (iy0, ix0) of `image` (zeros outside it) into 36 planes `vPlane` floats
/// apart, plane i·6 + j at `v` + (i·6 + j)·vPlane; `tmp` holds 36 rows of C.
@inline(__always)
private func winograd4InputTile(_ image: UnsafePointer<Float>, _ g: ConvGeometry, iy0: Int, ix0: Int,
                                zero: UnsafeMutablePointer<Float>, tmp: UnsafeMutablePointer<Float>,
                                _ v: UnsafeMutablePointer<Float>, vPlane: Int) {
    let c = g.c
    @inline(__always) func pixel(_ i: Int, _ j: Int) -> UnsafePointer<Float> { g.pixel(image, iy0 + i, ix0 + j, zero: zero) }
    // Along each input row: tmp[i][j] = (d B)[i][j].
    for i in 0..<6 {
        winograd4InputLine(pixel(i, 0), pixel(i, 1), pixel(i, 2), pixel(i, 3), pixel(i, 4), pixel(i, 5),
                           into: tmp + (i * 6) * c, stride: c, c: c)
    }
    // Down each column: V[i][j] = (Bᵀ tmp)[i][j], stored at plane i·6 + j.
    for j in 0..<6 {
        let b0 = UnsafePointer(tmp + j * c), line = 6 * c
        winograd4InputLine(b0, b0 + line, b0 + 2 * line, b0 + 3 * line, b0 + 4 * line, b0 + 5 * line,
                           into: v + j * vPlane, stride: 6 * vPlane, c: c)
    }
}

/// Bᵀ along one line of six points, each C floats: the six results go to `out`,
/// `stride` floats apart. The rows and then the columns of a tile pass through it.
@inline(__always)
private func winograd4InputLine(_ d0: UnsafePointer<Float>, _ d1: UnsafePointer<Float>, _ d2: UnsafePointer<Float>,
                                _ d3: UnsafePointer<Float>, _ d4: UnsafePointer<Float>, _ d5: UnsafePointer<Float>,
                                into out: UnsafeMutablePointer<Float>, stride: Int, c: Int) {
    for ch in 0..<c {
        let a0 = d0[ch], a1 = d1[ch], a2 = d2[ch], a3 = d3[ch], a4 = d4[ch], a5 = d5[ch]
        out[ch] = 4 * a0 - 5 * a2 + a4
        out[stride + ch] = a4 + a3 - 4 * (a1 + a2)
        out[2 * stride + ch] = a4 - a3 + 4 * (a1 - a2)
        out[3 * stride + ch] = a4 - a2 + 2 * (a3 - a1)
        out[4 * stride + ch] = a4 - a2 - 2 * (a3 - a1)
        out[5 * stride + ch] = 4 * a1 - 5 * a3 + a5
    }
}

/// The output transform of one tile, Y = Aᵀ M A plus bias: from the 36
/// product planes at `src` (`mPlane` floats apart) into `rows` × `width`
/// output pixels from `row0`: pixels `rowStride` floats apart, lines `lineStride`.
@inline(__always)
private func winograd4OutputTile(_ src: UnsafeMutablePointer<Float>, mPlane: Int, outputs o: Int, tmp: UnsafeMutablePointer<Float>,
                                 bias: UnsafePointer<Float>?, row0: UnsafeMutablePointer<Float>, rowStride: Int, lineStride: Int,
                                 rows: Int, width: Int) {
    // Down each column j: tmp[r][j] = (Aᵀ M)[r][j], r 0..<4.
    for j in 0..<6 {
        let m0 = src + j * mPlane, step = 6 * mPlane
        let s = tmp + j * o
        for oc in 0..<o {
            let a0 = m0[oc], a1 = m0[step + oc], a2 = m0[2 * step + oc]
            let a3 = m0[3 * step + oc], a4 = m0[4 * step + oc], a5 = m0[5 * step + oc]
            let p12 = a1 + a2, m12 = a1 - a2, p34 = a3 + a4, m34 = a3 - a4
            s[oc] = a0 + p12 + p34
            s[6 * o + oc] = m12 + 2 * m34
            s[12 * o + oc] = p12 + 4 * p34
            s[18 * o + oc] = m12 + 8 * m34 + a5
        }
    }
    // Along each row r, into the (up to) 4×4 output pixels.
    for r in 0..<rows {
        let s0 = tmp + (r * 6) * o, s1 = s0 + o, s2 = s1 + o, s3 = s2 + o, s4 = s3 + o, s5 = s4 + o
        let row = row0 + r * lineStride
        let b = bias
        for oc in 0..<o {
            let a0 = s0[oc], a1 = s1[oc], a2 = s2[oc], a3 = s3[oc], a4 = s4[oc], a5 = s5[oc]
            let p12 = a1 + a2, m12 = a1 - a2, p34 = a3 + a4, m34 = a3 - a4
            let bb = b?[oc] ?? 0
            row[oc] = a0 + p12 + p34 + bb
            if width > 1 { row[rowStride + oc] = m12 + 2 * m34 + bb }
            if width > 2 { row[2 * rowStride + oc] = p12 + 4 * p34 + bb }
            if width > 3 { row[3 * rowStride + oc] = m12 + 8 * m34 + a5 + bb }
        }
    }
}
