import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3).
///
/// Each 2×2 block of output pixels is computed from a 4×4 input tile with 16
/// products per (input, output) channel pair instead of 36: the tile and the
/// kernel are mapped to a 4×4 "transform" domain (V = Bᵀ d B, U = G g Gᵀ),
/// multiplied point by point — which, summed over input channels, is 16
/// independent GEMMs — and mapped back (Y = Aᵀ M A). The transforms only add
/// and halve, so the result stays within a few float32 ulps of the direct
/// convolution; SD's UNets and VAEs spend most of their time in exactly these
/// convolutions, so 2.25× fewer multiplications is the largest single saving.
///
/// Channels-last makes every transform a loop over contiguous channels.
public enum ConvolutionAlgorithm {
    /// On unless the environment sets NEST_WINOGRAD=0.
    static let winogradEnabled = Atomic<Bool>(EngineConfiguration.current.winograd)
    /// Whether eligible convolutions use Winograd (tests switch it off to
    /// compare against the direct path).
    /// A choice for the current task only (see `KernelSwitches`); nil: the global one.
    @TaskLocal static var taskOverride: Bool? = nil
    static let openScopes = Atomic<Int>(0)

    /// Runs `body` with Winograd on or off for this task only.
    public static func with<T>(winograd on: Bool, _ body: () throws -> T) rethrows -> T {
        openScopes.wrappingAdd(1, ordering: .relaxed)
        defer { openScopes.wrappingSubtract(1, ordering: .relaxed) }
        return try $taskOverride.withValue(on, operation: body)
    }

    public static var useWinograd: Bool {
        get {
            if openScopes.load(ordering: .relaxed) != 0, let on = taskOverride { return on }
            return winogradEnabled.load(ordering: .relaxed)
        }
        set { winogradEnabled.store(newValue, ordering: .relaxed) }
    }

    /// Small channel counts gain nothing (the transforms dominate), and the
    /// weights are transformed on every call (16/9 of their size, written
    /// once), which only pays off over enough output tiles: at SD 1.5's
    /// lowest resolution (8×8 latents, 1280 channels) the transform costs
    /// more than the multiplications it saves.
    static func winogradApplies(_ g: ConvGeometry) -> Bool {
        useWinograd && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.c >= 32 && g.o >= 32
            && g.ho >= 4 && g.wo >= 4 && g.n * ((g.ho + 1) / 2) * ((g.wo + 1) / 2) >= winogradMinimumTiles.load(ordering: .relaxed)
    }

    /// The Winograd variant an eligible convolution uses: F(4×4, 3×3) where
    /// the output holds at least `winograd4MinimumTiles` 4×4 tiles (over the
    /// batch) and is at least 8 pixels on each side, F(2×2, 3×3) otherwise.
    static func winogradTileSize(_ g: ConvGeometry) -> Int {
        if let forced = tileOverride, openScopes.load(ordering: .relaxed) != 0 { return forced }
        let tiles4 = g.n * ((g.ho + 3) / 4) * ((g.wo + 3) / 4)
        return g.ho >= 8 && g.wo >= 8 && tiles4 >= winograd4MinimumTiles.load(ordering: .relaxed) ? 4 : 2
    }

    @TaskLocal static var tileOverride: Int? = nil

    /// Runs `body` with eligible convolutions on F(`tile`×`tile`, 3×3) (2 or 4) for this task only.
    public static func with<T>(winogradTile tile: Int, _ body: () throws -> T) rethrows -> T {
        precondition(tile == 2 || tile == 4, "Winograd tiles are 2×2 or 4×4, not \(tile)")
        openScopes.wrappingAdd(1, ordering: .relaxed)
        defer { openScopes.wrappingSubtract(1, ordering: .relaxed) }
        return try $tileOverride.withValue(tile, operation: body)
    }

    /// 4×4 output tiles (over the batch) below which F(2×2) is used instead of F(4×4).
    public static let winograd4MinimumTiles = Atomic<Int>(128)

    /// Output tiles (2×2 pixels, over the batch) below which Winograd is not used.
    public static let winogradMinimumTiles = Atomic<Int>(512)
}

/// Tiles handled together: their transformed inputs (16·T·C floats) and
/// products (16·T·O floats) live in a per-worker scratch buffer.
let winogradTileBlock = 96

/// U = G g Gᵀ for every (output, input) channel pair, laid out [16][O][C]
/// so each of the 16 GEMMs reads its B operand as [O, C] (transposed).
/// G = [[1,0,0], [½,½,½], [½,-½,½], [0,0,1]].
func winogradWeights(_ weight: UnsafePointer<Float>, o: Int, c: Int) -> Storage {
    let u = Storage(count: 16 * o * c)
    let up = u.pointer, plane = o * c
    let scratch = ScratchBuffers(count: Threads.count, floats: 21 * c)
    _ = parallelWorkers(o) { worker, range in
        let tmp = scratch[worker], base = tmp + 12 * c
        for oc in range {
            // g[ky][kx] becomes a row of C channels at base[(ky·3 + kx)·C].
            winogradKernelTapsFirst(weight + oc * 9 * c, c: c, into: base)
            // G·g over ky, for each kx: tmp[row][kx][:]
            for kx in 0..<3 {
                let g0 = base + kx * c, g1 = base + (3 + kx) * c, g2 = base + (6 + kx) * c
                let r0 = tmp + kx * c, r1 = tmp + (3 + kx) * c, r2 = tmp + (6 + kx) * c, r3 = tmp + (9 + kx) * c
                for ch in 0..<c {
                    let a = g0[ch], b = g1[ch], d = g2[ch]
                    r0[ch] = a; r1[ch] = 0.5 * (a + b + d); r2[ch] = 0.5 * (a - b + d); r3[ch] = d
                }
            }
            // (G·g)·Gᵀ over kx.
            for row in 0..<4 {
                let t0 = tmp + (row * 3) * c, t1 = tmp + (row * 3 + 1) * c, t2 = tmp + (row * 3 + 2) * c
                let u0 = up + (row * 4) * plane + oc * c, u1 = u0 + plane, u2 = u1 + plane, u3 = u2 + plane
                for ch in 0..<c {
                    let a = t0[ch], b = t1[ch], d = t2[ch]
                    u0[ch] = a; u1[ch] = 0.5 * (a + b + d); u2[ch] = 0.5 * (a - b + d); u3[ch] = d
                }
            }
        }
    }
    return u
}

func conv2dWinogradForward(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                           _ g: ConvGeometry, _ out: UnsafeMutablePointer<Float>) {
    let c = g.c, o = g.o
    FLOPCounter.add(2 * g.n * g.ho * g.wo * o * 9 * c)
    let u = winogradWeights(weight, o: o, c: c)
    let up = UnsafePointer(u.pointer)
    let tilesY = (g.ho + 1) / 2, tilesX = (g.wo + 1) / 2
    let tilesPerImage = tilesY * tilesX, total = g.n * tilesPerImage
    let tb = winogradTileBlock
    forEachWinogradBlock(tiles: total, tileBlock: tb, planes: 16, c: c, o: o) { block in
        let v = block.v, m = block.m, tmp = block.tmp, t0 = block.first, count = block.count
        // Input transform V = Bᵀ d B, Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; V[ξ][t][:].
        let vPlane = tb * c
        for t in 0..<count {
            let tile = t0 + t, img = tile / tilesPerImage, rem = tile % tilesPerImage
            let iy0 = (rem / tilesX) * 2 - g.padTop, ix0 = (rem % tilesX) * 2 - g.padLeft
            winogradInputTile(x + img * g.h * g.w * c, g, iy0: iy0, ix0: ix0, zero: block.zero, tmp: tmp, v + t * c, vPlane: vPlane)
        }
        // 16 GEMMs: M[ξ] (count × O) = V[ξ] (count × C) · U[ξ]ᵀ.
        for xi in 0..<16 {
            BLAS.gemmSerial(transB: true, m: count, n: o, k: c, a: v + xi * vPlane, lda: c,
                            b: up + xi * o * c, ldb: c, c: m + xi * tb * o, ldc: o, counted: false)
        }
        // Output transform Y = Aᵀ M A, Aᵀ = [[1,1,1,0],[0,1,-1,-1]], plus bias.
        let mPlane = tb * o
        for t in 0..<count {
            let tile = t0 + t, img = tile / tilesPerImage, rem = tile % tilesPerImage
            let oy0 = (rem / tilesX) * 2, ox0 = (rem % tilesX) * 2
            winogradOutputTile(m + t * o, mPlane: mPlane, outputs: o, tmp: tmp, bias: bias,
                               left0: out + ((img * g.ho + oy0) * g.wo + ox0) * o, lineStride: g.wo * o,
                               rows: min(2, g.ho - oy0), hasRight: ox0 + 1 < g.wo)
        }
    }
}

/// The input transform of one tile, V = Bᵀ d B: the 4×4 input pixels from
/// (iy0, ix0) of `image` (zeros outside it) into 16 planes `vPlane` floats
/// apart, plane i·4 + j at `v` + (i·4 + j)·vPlane; `tmp` holds 16 rows of C.
@inline(__always)
private func winogradInputTile(_ image: UnsafePointer<Float>, _ g: ConvGeometry, iy0: Int, ix0: Int,
                               zero: UnsafeMutablePointer<Float>, tmp: UnsafeMutablePointer<Float>,
                               _ v: UnsafeMutablePointer<Float>, vPlane: Int) {
    let c = g.c
    @inline(__always) func pixel(_ i: Int, _ j: Int) -> UnsafePointer<Float> { g.pixel(image, iy0 + i, ix0 + j, zero: zero) }
    // Along each input row: tmp[i][j] = (d B)[i][j].
    for i in 0..<4 {
        let d0 = pixel(i, 0), d1 = pixel(i, 1), d2 = pixel(i, 2), d3 = pixel(i, 3)
        let r0 = tmp + (i * 4) * c, r1 = r0 + c, r2 = r1 + c, r3 = r2 + c
        for ch in 0..<c {
            let a0 = d0[ch], a1 = d1[ch], a2 = d2[ch], a3 = d3[ch]
            r0[ch] = a0 - a2; r1[ch] = a1 + a2; r2[ch] = a2 - a1; r3[ch] = a1 - a3
        }
    }
    // Down each column: V[i][j] = (Bᵀ tmp)[i][j].
    for j in 0..<4 {
        let b0 = tmp + j * c, b1 = tmp + (4 + j) * c, b2 = tmp + (8 + j) * c, b3 = tmp + (12 + j) * c
        let o0 = v + j * vPlane, o1 = o0 + 4 * vPlane, o2 = o1 + 4 * vPlane, o3 = o2 + 4 * vPlane
        for ch in 0..<c {
            let a0 = b0[ch], a1 = b1[ch], a2 = b2[ch], a3 = b3[ch]
            o0[ch] = a0 - a2; o1[ch] = a1 + a2; o2[ch] = a2 - a1; o3[ch] = a1 - a3
        }
    }
}

/// The output transform of one tile, Y = Aᵀ M A plus bias: from the 16
/// product planes at `src` (`mPlane` floats apart) into `rows` lines of the
/// 2×2 output pixels from `left0` (the right column only when `hasRight`).
@inline(__always)
private func winogradOutputTile(_ src: UnsafeMutablePointer<Float>, mPlane: Int, outputs o: Int, tmp: UnsafeMutablePointer<Float>,
                                bias: UnsafePointer<Float>?, left0: UnsafeMutablePointer<Float>, lineStride: Int,
                                rows: Int, hasRight: Bool) {
    // Down each column j: tmp[0][j] = M0j + M1j + M2j, tmp[1][j] = M1j - M2j - M3j.
    for j in 0..<4 {
        let m0 = src + j * mPlane, m1 = m0 + 4 * mPlane, m2 = m1 + 4 * mPlane, m3 = m2 + 4 * mPlane
        let s0 = tmp + j * o, s1 = tmp + (4 + j) * o
        for oc in 0..<o {
            let a0 = m0[oc], a1 = m1[oc], a2 = m2[oc], a3 = m3[oc]
            s0[oc] = a0 + a1 + a2; s1[oc] = a1 - a2 - a3
        }
    }
    // Along each row i, into the (up to) 2×2 output pixels.
    for i in 0..<rows {
        let s0 = tmp + (i * 4) * o, s1 = s0 + o, s2 = s1 + o, s3 = s2 + o
        let left = left0 + i * lineStride
        if let bias {
            for oc in 0..<o { left[oc] = s0[oc] + s1[oc] + s2[oc] + bias[oc] }
        } else {
            for oc in 0..<o { left[oc] = s0[oc] + s1[oc] + s2[oc] }
        }
        guard hasRight else { continue }
        let right = left + o
        if let bias {
            for oc in 0..<o { right[oc] = s1[oc] - s2[oc] - s3[oc] + bias[oc] }
        } else {
            for oc in 0..<o { right[oc] = s1[oc] - s2[oc] - s3[oc] }
        }
    }
}
