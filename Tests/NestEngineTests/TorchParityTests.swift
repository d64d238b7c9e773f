import NestEngine
import Testing

/// Forward (and backward) of every operation against PyTorch 2.13 on the
/// same inputs; fixtures from tools/make_fixtures.py.
@Suite struct TorchParityTests {

    @Test func linearAndMatmul() {
        checkAgainstTorch("linear", inputs: ["x", "w", "b"]) { F.linear($0[0], weight: $0[1], bias: $0[2]) }
        checkAgainstTorch("matmul", inputs: ["a", "b"]) { F.matmul($0[0], $0[1]) }
        checkAgainstTorch("matmul_tb", inputs: ["a", "b"]) { F.matmul($0[0], $0[1], transposeB: true) }
        checkAgainstTorch("matmul_shared", inputs: ["a", "b"]) { F.matmul($0[0], $0[1]) }
    }

    @Test(arguments: [("conv3x3", 1, 1), ("conv3x3_s2", 2, 1), ("conv1x1", 1, 0), ("conv4x4_s2_p0", 2, 0)])
    func conv2d(name: String, stride: Int, padding: Int) {
        checkAgainstTorch(name, inputs: ["x", "w", "b"]) {
            F.conv2d($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding)
        }
    }

    @Test func normalization() {
        checkAgainstTorch("group_norm", inputs: ["x", "w", "b"]) {
            F.groupNorm($0[0] + 0.5, groups: 4, weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        checkAgainstTorch("layer_norm", inputs: ["x", "w", "b"]) {
            F.layerNorm($0[0] + 1, weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        checkAgainstTorch("softmax", inputs: ["x"]) { F.softmax($0[0]) }
    }

    @Test func activations() {
        checkAgainstTorch("silu", inputs: ["x"]) { F.silu($0[0]) }
        checkAgainstTorch("gelu", inputs: ["x"]) { F.gelu($0[0]) }
        checkAgainstTorch("gelu_tanh", inputs: ["x"]) { F.gelu($0[0], approximate: .tanh) }
        checkAgainstTorch("quick_gelu", inputs: ["x"]) { F.quickGelu($0[0]) }
        checkAgainstTorch("geglu", inputs: ["x"]) { F.geglu($0[0]) }
    }

    @Test(arguments: [("attention", 3, false), ("attention_long", 2, false), ("attention_causal", 2, true), ("attention_dv", 2, false)])
    func attention(name: String, heads: Int, causal: Bool) {
        checkAgainstTorch(name, inputs: ["q", "k", "v"]) {
            F.attention(query: $0[0], key: $0[1], value: $0[2], heads: heads, causal: causal)
        }
    }

    @Test func arithmetic() {
        checkAgainstTorch("add_bcast", inputs: ["a", "b"]) { $0[0] + $0[1] }
        checkAgainstTorch("mul_bcast", inputs: ["a", "b"]) { $0[0] * $0[1] }
        checkAgainstTorch("sub_bcast", inputs: ["a", "b"]) { $0[0] - $0[1] }
        checkAgainstTorch("div", inputs: ["a", "b"]) { $0[0] / $0[1] }
    }

    @Test func shapes() {
        checkAgainstTorch("permute", inputs: ["x"]) { $0[0].permuted([0, 3, 1, 2]) }
        checkAgainstTorch("concat", inputs: ["a", "b"]) { F.concat([$0[0], $0[1]], axis: 1) }
        checkAgainstTorch("slice", inputs: ["x"]) { $0[0].slice(axis: 1, 2..<7) }
        checkAgainstTorch("upsample", inputs: ["x"]) { F.upsampleNearest2x($0[0]) }
        let ids = Fixtures.shared.tensor("embedding.ids")
        checkAgainstTorch("embedding", inputs: ["table"]) {
            F.embedding(ids.array.map { Int($0) }, shape: ids.shape, table: $0[0])
        }
    }

    @Test func reductions() {
        checkAgainstTorch("mean_axes", inputs: ["x"]) { $0[0].mean(axes: [1, 2]) }
        checkAgainstTorch("sum_all", inputs: ["x"]) { $0[0].sum() }
        checkAgainstTorch("mse", inputs: ["a", "b"]) { F.mseLoss($0[0], $0[1]) }
    }
}
