import NestEngine
import NestPersonalization
import Testing

@Suite struct SingleTokenTests {
    @Test func replacesOnlyThePlaceholderRow() {
        let context = Tensor.randn([2, 5, 3], seed: 1)
        let vector = Tensor([9, 8, 7], shape: [1, 1, 3])
        let out = replacingToken(in: context, positions: [nil, 2], with: vector)
        for item in 0..<2 {
            for row in 0..<5 {
                for k in 0..<3 {
                    let i = (item * 5 + row) * 3 + k
                    let expected = item == 1 && row == 2 ? vector.data[k] : context.data[i]
                    #expect(out.data[i] == expected)
                }
            }
        }
    }

    @Test func gradientFlowsIntoTheVectorOnly() {
        let context = Tensor.randn([1, 4, 2], seed: 2)
        context.requiresGrad = true
        let vector = Tensor([1, -1], shape: [1, 1, 2], requiresGrad: true)
        replacingToken(in: context, positions: [3], with: vector).sum().backward()
        #expect(vector.grad!.array == [1, 1])
        #expect(context.grad!.array == [1, 1, 1, 1, 1, 1, 0, 0])
    }
}
