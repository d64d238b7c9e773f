import NestEngine
import Testing

/// Every operation's backward against finite differences.
@Suite struct GradientTests {
    func r(_ shape: [Int], _ seed: UInt64, _ scale: Float = 1) -> Tensor { Tensor.randn(shape, seed: seed, std: scale) }

    @Test func linearAndMatmul() {
        checkGradients("linear", inputs: [r([2, 3, 5], 1), r([4, 5], 2), r([4], 3)]) { F.linear($0[0], weight: $0[1], bias: $0[2]) }
        checkGradients("matmul", inputs: [r([2, 3, 4], 4), r([2, 4, 5], 5)]) { F.matmul($0[0], $0[1]) }
        checkGradients("matmul tA tB", inputs: [r([2, 4, 3], 6), r([2, 5, 4], 7)]) {
            F.matmul($0[0], $0[1], transposeA: true, transposeB: true)
        }
        checkGradients("matmul tA", inputs: [r([2, 4, 3], 6), r([2, 4, 5], 7)]) { F.matmul($0[0], $0[1], transposeA: true) }
        checkGradients("matmul shared", inputs: [r([3, 2, 4], 8), r([4, 3], 9)]) { F.matmul($0[0], $0[1]) }
    }

    @Test func weightedMSE() {
        let w = Tensor((0..<12).map { Float($0 % 4) * 0.5 + 0.25 }, shape: [3, 4])
        checkGradients("weighted mse", inputs: [r([3, 4], 40), r([3, 4], 41)]) { F.weightedMSELoss($0[0], $0[1], weights: w) }
        // Equal weights: plain MSE; weights 2 and 0: the mean over the weighted half.
        let a = r([2, 6], 42), b = r([2, 6], 43)
        #expect(abs(F.weightedMSELoss(a, b, weights: Tensor(Array(repeating: 3, count: 12), shape: [2, 6])).item - F.mseLoss(a, b).item) < 1e-6)
        let half = Tensor((0..<12).map { $0 < 6 ? 2 : 0 }, shape: [2, 6])
        #expect(abs(F.weightedMSELoss(a, b, weights: half).item
                    - F.mseLoss(a.slice(axis: 0, 0..<1), b.slice(axis: 0, 0..<1)).item) < 1e-6)
    }

    @Test func conv2d() {
        checkGradients("conv3x3 pad1", inputs: [r([2, 5, 6, 3], 10), r([4, 3, 3, 3], 11, 0.3), r([4], 12)]) {
            F.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 1, padding: 1)
        }
        checkGradients("conv3x3 stride2", inputs: [r([1, 7, 8, 2], 13), r([3, 2, 3, 3], 14, 0.3), r([3], 15)]) {
            F.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        }
        checkGradients("conv1x1", inputs: [r([2, 3, 3, 4], 16), r([5, 4, 1, 1], 17, 0.3)]) {
            F.conv2d($0[0], weight: $0[1], stride: 1, padding: 0)
        }
        checkGradients("conv asym pad", inputs: [r([1, 6, 5, 2], 18), r([2, 2, 3, 3], 19, 0.3)]) {
            F.conv2d($0[0], weight: $0[1], bias: nil, stride: 2, padding: (0, 1, 1, 0))
        }
    }

    @Test func normalization() {
        checkGradients("group norm", inputs: [r([2, 3, 2, 6], 20, 2), r([6], 21), r([6], 22)], eps: 3e-3) {
            F.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2])
        }
        checkGradients("layer norm", inputs: [r([3, 8], 23, 2), r([8], 24), r([8], 25)], eps: 3e-3) {
            F.layerNorm($0[0], weight: $0[1], bias: $0[2])
        }
        checkGradients("softmax", inputs: [r([3, 7], 26, 2)], eps: 3e-3) { F.softmax($0[0]) }
    }

    @Test func activations() {
        checkGradients("silu", inputs: [r([40], 30, 3)], eps: 3e-3) { F.silu($0[0]) }
        checkGradients("gelu", inputs: [r([40], 31, 3)], eps: 3e-3) { F.gelu($0[0]) }
        checkGradients("gelu tanh", inputs: [r([40], 32, 3)], eps: 3e-3) { F.gelu($0[0], approximate: .tanh) }
        checkGradients("quick gelu", inputs: [r([40], 33, 3)], eps: 3e-3) { F.quickGelu($0[0]) }
        checkGradients("geglu", inputs: [r([3, 2, 20], 34, 2)], eps: 3e-3) { F.geglu($0[0]) }
        checkGradients("sigmoid", inputs: [r([20], 35, 3)], eps: 3e-3) { F.sigmoid($0[0]) }
        checkGradients("tanh", inputs: [r([20], 36, 2)], eps: 3e-3) { F.tanh($0[0]) }
        checkGradients("sqrt", inputs: [F.square(r([20], 37)) + 0.5], eps: 1e-3) { F.sqrt($0[0]) }
    }

    @Test func attention() {
        checkGradients("attention", inputs: [r([2, 5, 8], 40), r([2, 7, 8], 41), r([2, 7, 6], 42)], eps: 3e-3) {
            F.attention(query: $0[0], key: $0[1], value: $0[2], heads: 2)
        }
        checkGradients("attention causal", inputs: [r([1, 6, 4], 43), r([1, 6, 4], 44), r([1, 6, 4], 45)], eps: 3e-3) {
            F.attention(query: $0[0], key: $0[1], value: $0[2], heads: 1, causal: true)
        }
        // More keys than one key block, so the streaming softmax is exercised.
        checkGradients("attention long", inputs: [r([1, 3, 4], 46), r([1, 600, 4], 47), r([1, 600, 4], 48)], eps: 3e-3) {
            F.attention(query: $0[0], key: $0[1], value: $0[2], heads: 1)
        }
    }

    @Test func arithmeticAndShapes() {
        checkGradients("add broadcast", inputs: [r([2, 3, 4], 50), r([3, 1], 51)]) { $0[0] + $0[1] }
        checkGradients("sub broadcast", inputs: [r([2, 3, 4], 52), r([4], 53)]) { $0[0] - $0[1] }
        checkGradients("mul broadcast", inputs: [r([2, 3, 4], 54), r([2, 1, 4], 55)]) { $0[0] * $0[1] }
        checkGradients("div", inputs: [r([5], 56), Tensor([1.5, 2, -1.7, 3, 0.9], shape: [5])], eps: 1e-3) { $0[0] / $0[1] }
        checkGradients("scale", inputs: [r([6], 57)]) { $0[0] * 3 + 1 }
        checkGradients("permute", inputs: [r([2, 3, 4], 58)]) { $0[0].permuted([2, 0, 1]) }
        checkGradients("reshape", inputs: [r([2, 6], 59)]) { $0[0].reshaped([3, -1]) * $0[0].reshaped([3, 4]) }
        checkGradients("concat", inputs: [r([2, 3], 60), r([2, 2], 61)]) { F.concat([$0[0], $0[1]], axis: 1) }
        checkGradients("slice", inputs: [r([4, 5], 62)]) { $0[0].slice(axis: 1, 1..<4) }
        checkGradients("split", inputs: [r([6, 2], 63)]) { x in
            let parts = x[0].split([2, 4], axis: 0)
            return F.concat([parts[1], parts[0] * parts[0]], axis: 0)
        }
        checkGradients("upsample", inputs: [r([1, 2, 3, 2], 64)]) { F.upsampleNearest2x($0[0]) }
        checkGradients("embedding", inputs: [r([5, 3], 65)]) { F.embedding([4, 0, 4, 2], shape: [2, 2], table: $0[0]) }
    }

    @Test func reductionsAndLoss() {
        checkGradients("sum", inputs: [r([3, 4], 70)]) { $0[0].sum() }
        checkGradients("mean", inputs: [r([3, 4], 71)]) { $0[0].mean() }
        checkGradients("sum axes", inputs: [r([2, 3, 4], 72)]) { $0[0].sum(axes: [0, 2]) }
        checkGradients("mean axes keep", inputs: [r([2, 3, 4], 73)]) { $0[0].mean(axes: [1], keepDims: true) }
        checkGradients("mse", inputs: [r([3, 4], 74), r([3, 4], 75)]) { F.mseLoss($0[0], $0[1]) }
    }
}
