/// One block of Winograd tiles on one worker, and the worker's scratch: the
/// transformed inputs V (planes·tileBlock·C floats), the products M
/// (planes·tileBlock·O), a zero row of C floats for padding, and `planes` rows
/// of one tile being transformed.
struct WinogradBlock {
    /// The first tile of the block (tiles count row-major over every image).
    let first: Int
    /// Tiles in the block.
    let count: Int
    let v: UnsafeMutablePointer<Float>
    let m: UnsafeMutablePointer<Float>
    let zero: UnsafeMutablePointer<Float>
    let tmp: UnsafeMutablePointer<Float>
}

/// The frame both Winograd tilings (F(2×2, 3×3) and F(4×4, 3×3), with 16 and 36
/// transform planes) share: `tiles` in blocks of `tileBlock` spread over the
/// workers, each block handed to `body` with its worker's scratch.
@inline(__always)
func forEachWinogradBlock(tiles total: Int, tileBlock tb: Int, planes: Int, c: Int, o: Int,
                          _ body: (WinogradBlock) -> Void) {
    let blocks = (total + tb - 1) / tb
    let scratch = ScratchBuffers(count: min(Threads.count, blocks), floats: planes * tb * (c + o) + c + planes * max(c, o))
    parallelTasks(blocks) { worker, block in
        let v = scratch[worker], m = v + planes * tb * c, zero = m + planes * tb * o, tmp = zero + c
        zero.update(repeating: 0, count: c)
        let t0 = block * tb
        body(WinogradBlock(first: t0, count: min(tb, total - t0), v: v, m: m, zero: zero, tmp: tmp))
    }
}

/// One output channel's 3×3 kernel, stored [C][3][3] (OIHW), rewritten as
/// nine rows of C channels ([3][3][C]) so the weight transforms run over
/// contiguous channels.
@inline(__always)
func winogradKernelTapsFirst(_ kernel: UnsafePointer<Float>, c: Int, into taps: UnsafeMutablePointer<Float>) {
    for ch in 0..<c {
        let k = kernel + ch * 9
        for tap in 0..<9 { taps[tap * c + ch] = k[tap] }
    }
}
