import Foundation
import NestEngine
import Testing

/// Log-softmax and cross-entropy: values by hand, gradients against finite differences.
@Suite struct CrossEntropyTests {
    func r(_ shape: [Int], _ seed: UInt64, _ scale: Float = 1) -> Tensor { Tensor.randn(shape, seed: seed, std: scale) }

    @Test func logSoftmaxValues() {
        let x = Tensor([1, 2, 3, -1000, 0, 1000], shape: [2, 3])
        let y = F.logSoftmax(x).array
        let z = log(exp(1.0) + exp(2.0) + exp(3.0))
        for (a, b) in zip(y.prefix(3), [1 - z, 2 - z, 3 - z]) { #expect(abs(Double(a) - b) < 1e-5) }
        // Extreme logits stay finite: the largest is log 1 = 0, the others exactly their gap.
        #expect(y[5] == 0 && y[4] == -1000 && y[3] == -2000)
    }

    @Test func crossEntropyValue() {
        let logits = Tensor([2, 0, 0, 0, 1, 0], shape: [2, 3])
        let loss = F.crossEntropy(logits, targets: [0, 2]).item
        let a = -(2 - log(exp(2.0) + 2)), b = -(0 - log(exp(1.0) + 2))
        #expect(abs(Double(loss) - (a + b) / 2) < 1e-6)
    }

    @Test func gradients() {
        checkGradients("log softmax", inputs: [r([3, 7], 1, 2)], eps: 3e-3) { F.logSoftmax($0[0]) }
        checkGradients("log softmax 3d", inputs: [r([2, 2, 5], 2, 2)], eps: 3e-3) { F.logSoftmax($0[0]) }
        checkGradients("cross entropy", inputs: [r([4, 6], 3, 2)], eps: 3e-3) {
            F.crossEntropy($0[0], targets: [5, 0, 2, 2])
        }
        // Through a scaled similarity matrix, as CLIP uses it.
        checkGradients("cross entropy of a product", inputs: [r([4, 3], 4), r([4, 3], 5)], eps: 3e-3) {
            F.crossEntropy(F.matmul($0[0], $0[1], transposeB: true), targets: [0, 1, 2, 3]).scaled(3)
        }
    }
}
