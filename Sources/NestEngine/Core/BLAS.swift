import Synchronization
import CKernels
#if canImport(Glibc)
import Glibc
#endif
#if canImport(Accelerate)
import Accelerate
#else
import COpenBLAS
#endif

/// Row-major single-precision GEMM: C = alpha·op(A)·op(B) + beta·C, where
/// op(A) is M×K and op(B) is K×N.
///
/// The engine owns threading: BLAS runs single-threaded and `gemm` splits the
/// rows (or columns) of C across the engine's workers. Kernels that already
/// run inside a parallel region call `gemmSerial`.
public enum BLAS {
    private static let setup: Void = {
        #if !canImport(Accelerate)
        openblas_set_num_threads(1)
        #endif
    }()

    /// Debian's OpenBLAS 0.3.21 does not recognize recent AVX-512 CPUs and
    /// falls back to its generic Prescott kernels, 2–4× slower than the
    /// SkylakeX ones (measured: 45% of a UNet training step in
    /// sgemm_kernel_PRESCOTT). OpenBLAS picks its kernels when the library
    /// loads, so a program can only fix this by starting again: when
    /// OPENBLAS_CORETYPE is unset and OpenBLAS chose Prescott on a CPU with
    /// AVX-512 (or AVX2), this re-executes the program with SkylakeX (or
    /// Haswell). A user's own OPENBLAS_CORETYPE is always respected. Returns
    /// only when nothing needed changing (or the re-exec failed).
    public static func preferFastKernels() {
        #if os(Linux) && arch(x86_64)
        guard getenv("OPENBLAS_CORETYPE") == nil, getenv("NEST_BLAS_REEXEC") == nil,
              let name = openblas_get_corename(), String(cString: name).lowercased() == "prescott" else { return }
        let core: String
        if VectorKernels.available { core = "SkylakeX" } else if nest_kernels_avx2() != 0 { core = "Haswell" } else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("NEST_BLAS_REEXEC", "1", 1)  // never loop
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        #endif
    }

    @inline(__always)
    public static func gemmSerial(transA: Bool = false, transB: Bool = false,
                                  m: Int, n: Int, k: Int, alpha: Float = 1,
                                  a: UnsafePointer<Float>, lda: Int,
                                  b: UnsafePointer<Float>, ldb: Int,
                                  beta: Float = 0,
                                  c: UnsafeMutablePointer<Float>, ldc: Int, counted: Bool = true) {
        _ = setup
        if m == 0 || n == 0 { return }
        if counted { FLOPCounter.add(2 * m * n * k) }
        if m * n * k >= MixedPrecision.minimumWork && MixedPrecision.bfloat16Products {
            nest_bf16_gemm_general(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if k == 0 {
            // BLAS leaves C untouched when K = 0 only if beta = 1; make it explicit.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Parallel GEMM: splits M across workers when M is large, otherwise N.
    public static func gemm(transA: Bool = false, transB: Bool = false,
                            m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        let flops = m * n * k
        let workers = Threads.count
        if workers <= 1 || flops < 1 << 18 {
            gemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                       a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if m >= n || m >= 64 * workers {
            // Row blocks of C use row blocks of op(A). Keep blocks a multiple of 16.
            let rowsPer = ((m + workers - 1) / workers + 15) / 16 * 16
            parallelRanges((m + rowsPer - 1) / rowsPer) { blocks in
                for blk in blocks {
                    let r0 = blk * rowsPer, r1 = min(m, r0 + rowsPer)
                    let aStart = transA ? a + r0 : a + r0 * lda
                    gemmSerial(transA: transA, transB: transB, m: r1 - r0, n: n, k: k, alpha: alpha,
                               a: aStart, lda: lda, b: b, ldb: ldb, beta: beta, c: c + r0 * ldc, ldc: ldc)
                }
            }
        } else {
            let colsPer = ((n + workers - 1) / workers + 15) / 16 * 16
            parallelRanges((n + colsPer - 1) / colsPer) { blocks in
                for blk in blocks {
                    let c0 = blk * colsPer, c1 = min(n, c0 + colsPer)
                    let bStart = transB ? b + c0 * ldb : b + c0
                    gemmSerial(transA: transA, transB: transB, m: m, n: c1 - c0, k: k, alpha: alpha,
                               a: a, lda: lda, b: bStart, ldb: ldb, beta: beta, c: c + c0, ldc: ldc)
                }
            }
        }
    }
}

/// Multiply-add work done so far (2 FLOPs per multiply-add), for benchmarks'
/// GFLOP/s: every GEMM counts its 2·M·N·K; Winograd convolutions count the
/// direct convolution's work (what PyTorch's FLOP counter reports for them),
/// not the fewer multiplications they actually do.
public enum FLOPCounter {
    static let total = Atomic<Int>(0)
    @inline(__always) static func add(_ flops: Int) { total.wrappingAdd(flops, ordering: .relaxed) }
    public static var count: Int { total.load(ordering: .relaxed) }
}
