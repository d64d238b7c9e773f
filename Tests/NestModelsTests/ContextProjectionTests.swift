import Testing
import NestEngine
@testable import NestModels

/// Cross-attention keys/values of a context are computed once per generation
/// (inside ContextProjections.reusing) and never reused across contexts,
/// outside a scope, or while gradients flow.
@Suite struct ContextProjectionTests {
    let layer = ParameterSeeds.scoped(5) { Attention(queryDim: 16, crossAttentionDim: 12, heads: 2, dimHead: 8) }

    @Test func reusedWithinAScopeForTheSameContextOnly() {
        let context = Tensor.randn([2, 7, 12], seed: 1), other = Tensor.randn([2, 7, 12], seed: 2)
        let hidden = Tensor.randn([2, 5, 16], seed: 3)
        let plain = layer(hidden, context: context).array
        ContextProjections.reusing {
            let first = layer.contextProjections(context), second = layer.contextProjections(context)
            #expect(first.k === second.k && first.v === second.v)
            #expect(first.k.array == layer.to_k(context).array)
            #expect(layer(hidden, context: context).array == plain)
            let changed = layer.contextProjections(other)
            #expect(changed.k !== first.k && changed.k.array == layer.to_k(other).array)
        }
        let outside1 = layer.contextProjections(context), outside2 = layer.contextProjections(context)
        #expect(outside1.k !== outside2.k)
    }

    @Test func neverReusedWhenGradientsFlow() {
        let context = Tensor.randn([1, 4, 12], seed: 4, std: 1)
        let tracked = Tensor(context.array, shape: context.shape, requiresGrad: true)
        ContextProjections.reusing {
            let a = layer.contextProjections(tracked), b = layer.contextProjections(tracked)
            #expect(a.k !== b.k)
        }
    }
}
