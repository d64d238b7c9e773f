import CKernels
import Testing
@testable import NestEngine

/// The packed-panel float32 GEMMs (gemm_f32.c, gemm_f32_avx2.c) against a
/// plain double-precision product, over shapes that are not multiples of the
/// micro-kernels' rows (6, 12) or columns (16, 32), and with C wider than n so
/// a store past the last column or row would show.
@Suite struct PackedGEMMTests {
    typealias Kernel = (Int, Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void

    /// The packed GEMMs this CPU can run, by name.
    static var kernels: [(String, Kernel)] {
        var list: [(String, Kernel)] = []
        if VectorKernels.availableAVX2 { list.append(("avx2", { nest_f32_gemm_packed_avx2($0, $1, $2, $3, $4, $5, $6, $7) })) }
        if VectorKernels.available { list.append(("avx512", { nest_f32_gemm_packed($0, $1, $2, $3, $4, $5, $6, $7) })) }
        return list
    }

    @Test func detectionMatchesTheCPU() throws {
        #if arch(x86_64) && os(Linux)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #expect(VectorKernels.availableAVX2 == (cpuinfo.contains(" avx2") && cpuinfo.contains(" fma")))
        #expect(!Self.kernels.isEmpty || !cpuinfo.contains(" avx2"))
        #endif
    }

    @Test(arguments: [(1, 1, 1), (5, 7, 1), (6, 16, 3), (7, 17, 5), (13, 33, 9), (64, 320, 40),
                      (1, 40, 2), (11, 15, 64), (23, 70, 13), (64, 31, 320)])
    func packedGEMMMatchesTheDefinition(m: Int, n: Int, k: Int) {
        let lda = k + 3, ldc = n + 5, rowsOfC = m + 2
        let a = Tensor.randn([m * lda], seed: UInt64(m * 1000 + k), std: 1).array
        let w = Tensor.randn([n * k], seed: UInt64(n * 1000 + k), std: 1).array
        let floats = nest_f32_packed_floats(n, k)
        let packed = UnsafeMutableRawPointer.allocate(byteCount: floats * 4, alignment: 64).bindMemory(to: Float.self, capacity: floats)
        defer { packed.deallocate() }
        nest_f32_pack_panels(w, n, k, k, packed)
        var expected = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { expected[i * n + j] += Double(a[i * lda + p]) * Double(w[j * k + p]) } } }
        for (name, kernel) in Self.kernels {
            let sentinel: Float = -12345
            var c = [Float](repeating: sentinel, count: rowsOfC * ldc)
            c.withUnsafeMutableBufferPointer { kernel(m, n, k, a, lda, packed, $0.baseAddress!, ldc) }
            var worst = 0.0
            for i in 0..<m { for j in 0..<n { worst = max(worst, abs(Double(c[i * ldc + j]) - expected[i * n + j])) } }
            #expect(worst <= 1e-5 * Double(k).squareRoot() * 4, "\(name) m=\(m) n=\(n) k=\(k): \(worst)")
            let untouched = (0..<rowsOfC).allSatisfy { i in (0..<ldc).allSatisfy { j in (i < m && j < n) || c[i * ldc + j] == sentinel } }
            #expect(untouched, "\(name) m=\(m) n=\(n) k=\(k) wrote outside C")
        }
    }
}
