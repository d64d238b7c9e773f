import NestEngine
import Testing

@Suite struct AutogradTests {
    @Test func inferenceRecordsNothing() {
        let w = Tensor.randn([3, 3], seed: 1)  // requiresGrad defaults to false
        let y = F.linear(Tensor.randn([2, 3], seed: 2), weight: w)
        #expect(y.isLeaf, "an operation on tensors needing no gradient must not record history")
    }

    @Test func noGradSuppressesRecording() {
        let w = Tensor.randn([3, 3], seed: 1)
        w.requiresGrad = true
        let x = Tensor.randn([2, 3], seed: 2)
        #expect(!F.linear(x, weight: w).isLeaf)
        let y = Autograd.noGrad { F.linear(x, weight: w) }
        #expect(y.isLeaf)
        #expect(Autograd.isEnabled, "noGrad must restore recording")
    }

    @Test func gradientsAccumulateAcrossBackwardCalls() {
        let w = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        (w * w).sum().backward()
        #expect(w.grad!.array == [2, 4, 6])
        (w * 3).sum().backward()
        #expect(w.grad!.array == [5, 7, 9])
        w.zeroGrad()
        #expect(w.grad == nil)
    }

    @Test func sharedSubexpressionsSumTheirGradients() {
        let x = Tensor([2], shape: [1], requiresGrad: true)
        let y = x * x        // used twice below
        (y * y + y).sum().backward()   // d/dx (x⁴ + x²) = 4x³ + 2x = 36
        #expect(x.grad!.item == 36)
    }

    @Test func backwardReleasesTheGraph() {
        let x = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = (x * x).sum()
        y.backward()
        #expect(y.isLeaf, "the graph is released after backward unless retained")
        let z = (x * x).sum()
        z.backward(retainGraph: true)
        #expect(!z.isLeaf)
    }

    @Test func frozenParametersGetNoGradient() {
        let layer = Linear(3, 2, seed: 1)
        layer.unfreeze(prefix: "weight")
        let loss = layer(Tensor.randn([4, 3], seed: 2)).sum()
        loss.backward()
        #expect(layer.weight.grad != nil)
        #expect(layer.bias!.grad == nil)
    }

    @Test func gradModeIsPerThread() async {
        // Another task turning recording off must not affect this one.
        let w = Tensor([1, 2], shape: [2], requiresGrad: true)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { Autograd.noGrad { for _ in 0..<1000 { _ = Tensor.randn([2], seed: 1).scaled(2) } } }
            group.addTask { for _ in 0..<1000 { #expect(!(w * w).isLeaf) } }
        }
    }
}
