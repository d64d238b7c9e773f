import NestEngine
import Testing

@Suite struct OptimizerTests {
    @Test func adamWMatchesTorch() {
        let fx = Fixtures.shared
        let w = fx.tensor("adamw.w0")
        let opt = AdamW(parameters: [("w", w)], config: .init(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1))
        for step in 1...3 {
            w.grad = fx.tensor("adamw.grad\(step)")
            opt.update()
            let err = maxRelativeError(w, fx.tensor("adamw.after\(step)"))
            #expect(err < 1e-6, "AdamW step \(step) differs from torch.optim.AdamW by \(err)")
        }
        #expect(opt.step == 3)
    }

    /// A parameter at rate scale s moves exactly as it would under an optimizer
    /// of rate lr·s (its weight decay too); one at scale 1 is unaffected by the other.
    @Test func rateScalesActAsParameterGroups() {
        let config = AdamW.Config(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        let start: [Float] = [0.5, -1, 2]
        let full = Tensor(start, shape: [3]), scaled = Tensor(start, shape: [3])
        let alone = Tensor(start, shape: [3]), reference = Tensor(start, shape: [3])
        let grouped = AdamW(parameters: [("full", full), ("scaled", scaled)], config: config, rateScales: [1, 0.25])
        var slowConfig = config
        slowConfig.learningRate = 1e-2 * 0.25
        let slow = AdamW(parameters: [("w", reference)], config: slowConfig)
        let plain = AdamW(parameters: [("w", alone)], config: config)
        for step in 1...3 {
            let g = Tensor([0.3, Float(step), -0.7], shape: [3])
            for t in [full, scaled, alone, reference] { t.grad = g }
            grouped.update(); slow.update(); plain.update()
        }
        #expect(scaled.array == reference.array)
        #expect(full.array == alone.array)
        #expect(scaled.array != full.array)
    }

    @Test func clipGradNormMatchesTorch() {
        let fx = Fixtures.shared
        let a = Tensor(zeros: [4]), b = Tensor(zeros: [2, 3])
        a.grad = fx.tensor("clip.g1"); b.grad = fx.tensor("clip.g2")
        let norm = clipGradNorm([a, b], maxNorm: 1.5)
        #expect(abs(norm - fx.tensor("clip.norm").item) < 1e-5)
        #expect(maxRelativeError(a.grad!, fx.tensor("clip.g1_after")) < 1e-6)
        #expect(maxRelativeError(b.grad!, fx.tensor("clip.g2_after")) < 1e-6)
    }

    /// The AVX-512 update and the Swift loop give the same weights and moments
    /// bit for bit, over sizes with ragged ends and a tensor split across workers.
    @Test func adamWVectorAndPortableUpdatesAgree() {
        let sizes = [1, 15, 17, 40_001]
        func run(vector: Bool) -> [[Float]] {
            VectorKernels.with(vector) {
                let weights = sizes.enumerated().map { Tensor.randn([$0.element], seed: UInt64(10 + $0.offset)) }
                let opt = AdamW(parameters: weights.enumerated().map { ("w\($0.offset)", $0.element) },
                                config: .init(learningRate: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1))
                for step in 1...3 {
                    for (i, w) in weights.enumerated() { w.grad = Tensor.randn(w.shape, seed: UInt64(100 * step + i), std: 0.1) }
                    opt.update(learningRate: 1e-3 * Float(step))
                }
                return weights.map(\.array) + opt.firstMoments.map(\.array) + opt.secondMoments.map(\.array)
            }
        }
        let portable = run(vector: false)
        let start = sizes.enumerated().map { Tensor.randn([$0.element], seed: UInt64(10 + $0.offset)).array }
        #expect(Array(portable.prefix(sizes.count)) != start)
        if VectorKernels.available { #expect(run(vector: true) == portable) }
    }

    /// The clipped norm is the double-precision norm of all gradients, the same
    /// from the AVX-512 sum and the Swift loop (chunks of 65,536 summed in order).
    @Test func clipGradNormOverManyChunks() {
        let a = Tensor(zeros: [200_003]), b = Tensor(zeros: [5])
        a.grad = Tensor.randn(a.shape, seed: 21); b.grad = Tensor.randn(b.shape, seed: 22)
        let exact = (a.grad!.array + b.grad!.array).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let norms = [false, true].filter { !$0 || VectorKernels.available }.map { vector in
            VectorKernels.with(vector) { () -> Float in
                let x = Tensor(zeros: [200_003]), y = Tensor(zeros: [5])
                x.grad = a.grad!.copy(); y.grad = b.grad!.copy()
                let norm = clipGradNorm([x, y], maxNorm: 10)
                let after = (x.grad!.array + y.grad!.array).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                #expect(abs(after - 10) < 1e-3, "clipped to norm \(after), not 10")
                return norm
            }
        }
        for norm in norms { #expect(abs(Double(norm) - exact) / exact < 1e-6, "norm \(norm) against \(exact)") }
    }

    @Test func clipLeavesSmallGradientsAlone() {
        let a = Tensor(zeros: [3])
        a.grad = Tensor([0.1, 0.2, -0.2], shape: [3])
        let norm = clipGradNorm([a], maxNorm: 1)
        #expect(abs(norm - 0.3) < 1e-6)
        #expect(a.grad!.array == [0.1, 0.2, -0.2])
    }

    @Test func learningRateSchedule() {
        let warm = LearningRateSchedule(base: 1e-3, warmupSteps: 4, totalSteps: 14, decay: .cosine, minimum: 1e-5)
        #expect(abs(warm.rate(at: 0) - 2.5e-4) < 1e-9)
        #expect(abs(warm.rate(at: 3) - 1e-3) < 1e-9)
        #expect(abs(warm.rate(at: 4) - 1e-3) < 1e-9)           // cosine starts at the top
        #expect(abs(warm.rate(at: 9) - (1e-5 + (1e-3 - 1e-5) * 0.5)) < 1e-8)  // halfway
        #expect(abs(warm.rate(at: 14) - 1e-5) < 1e-9)          // bottom
        #expect(abs(warm.rate(at: 100) - 1e-5) < 1e-9)         // stays there
        let constant = LearningRateSchedule(base: 3e-4, warmupSteps: 2)
        #expect(constant.rate(at: 0) == 1.5e-4)
        #expect(constant.rate(at: 50) == 3e-4)
    }

    /// A tiny model fitted by AdamW: the loss must fall substantially.
    @Test func trainingReducesLoss() {
        let model = Linear(4, 1, seed: 3)
        model.unfreeze()
        let x = Tensor.randn([32, 4], seed: 4)
        let target = F.linear(x, weight: Tensor([1, -2, 0.5, 3], shape: [1, 4]), bias: Tensor([0.25], shape: [1]))
        let opt = AdamW(parameters: model.trainableParameters.map { ($0.path, $0.tensor) }, config: .init(learningRate: 0.05, weightDecay: 0))
        var first: Float = 0, last: Float = 0
        for step in 0..<200 {
            opt.zeroGrad()
            let loss = F.mseLoss(model(x), target)
            loss.backward()
            opt.update()
            if step == 0 { first = loss.item }
            last = loss.item
        }
        #expect(last < first / 100, "loss went from \(first) to \(last)")
    }
}
