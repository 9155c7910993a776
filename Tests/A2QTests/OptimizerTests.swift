import A2QCore
import A2QNN
import Testing

@Suite("Optimizers, schedules and the random generator")
struct OptimizerTests {
    /// A store with one decayed weight and one bias.
    func store(weight: Float, bias: Float) -> ParameterStore {
        var layout = ParameterLayout()
        _ = layout.declare("w", shape: [1], role: .weight)
        _ = layout.declare("b", shape: [1], role: .bias)
        let s = ParameterStore(layout: layout)
        s.setValues([weight, bias])
        return s
    }

    @Test("SGD with momentum and weight decay, two hand-computed steps")
    func sgdMomentum() {
        let s = store(weight: 1, bias: 2)
        let sgd = SGD(parameterCount: s.count, momentum: 0.9, weightDecay: 0.01)
        s.gradients[0] = 0.5; s.gradients[1] = 1
        sgd.step(s, learningRate: 0.1)
        // w: g = 0.5 + 0.01·1 = 0.51, b = 0.51, w = 1 − 0.051; bias: no decay, 2 − 0.1.
        #expect(abs(s.values[0] - 0.949) < 1e-6)
        #expect(abs(s.values[1] - 1.9) < 1e-6)
        s.gradients[0] = 0.5; s.gradients[1] = 1
        sgd.step(s, learningRate: 0.1)
        // g = 0.5 + 0.00949 = 0.50949, b = 0.459 + 0.50949 = 0.96849, w = 0.949 − 0.096849.
        #expect(abs(s.values[0] - 0.852151) < 1e-6)
        #expect(abs(s.values[1] - (1.9 - 0.1 * 1.9)) < 1e-6)
        #expect(sgd.stepCount == 2)
    }

    @Test("SGD Nesterov step")
    func nesterov() {
        let s = store(weight: 1, bias: 0)
        let sgd = SGD(parameterCount: s.count, momentum: 0.9, nesterov: true, weightDecay: 0.01)
        s.gradients[0] = 0.5
        sgd.step(s, learningRate: 0.1)
        // g = 0.51, b = 0.51, update g + 0.9·b = 0.969.
        #expect(abs(s.values[0] - 0.9031) < 1e-6)
    }

    @Test("Adam, two hand-computed steps; AdamW decouples decay")
    func adam() {
        let s = store(weight: 1, bias: 0)
        let adam = Adam(parameterCount: s.count)
        s.gradients[0] = 0.5
        adam.step(s, learningRate: 0.1)
        #expect(abs(Double(s.values[0]) - 0.900000002) < 1e-6)
        s.gradients[0] = -0.25
        adam.step(s, learningRate: 0.1)
        #expect(abs(Double(s.values[0]) - 0.8733662987078463) < 1e-6)

        let t = store(weight: 1, bias: 1)
        let adamW = Adam(parameterCount: t.count, weightDecay: 0.1, decoupled: true)
        t.gradients[0] = 0.5; t.gradients[1] = 0.5
        adamW.step(t, learningRate: 0.1)
        // w: 1 − 0.1·0.1·1 = 0.99, then the Adam step of 0.1; the bias is not decayed.
        #expect(abs(t.values[0] - 0.89) < 1e-6)
        #expect(abs(t.values[1] - 0.9) < 1e-6)
    }

    @Test("Learning-rate schedules with warm-up")
    func schedules() {
        let constant = LearningRateSchedule(base: 0.1, warmupSteps: 4)
        #expect(abs(constant.rate(at: 0) - 0.025) < 1e-7)
        #expect(abs(constant.rate(at: 3) - 0.1) < 1e-7)
        #expect(constant.rate(at: 100) == 0.1)
        let step = LearningRateSchedule(base: 1, kind: .step(every: 10, gamma: 0.5))
        #expect(step.rate(at: 9) == 1 && step.rate(at: 10) == 0.5 && step.rate(at: 25) == 0.25)
        let cosine = LearningRateSchedule(base: 1, kind: .cosine(totalSteps: 100, minimum: 0))
        #expect(cosine.rate(at: 0) == 1)
        #expect(abs(cosine.rate(at: 50) - 0.5) < 1e-6)
        #expect(abs(cosine.rate(at: 100)) < 1e-6)
    }

    @Test("xoshiro256** matches an independent implementation and replays from saved state")
    func random() {
        var g = Xoshiro256(seed: 42)
        // Reference values from a separate Python implementation of SplitMix64 + xoshiro256**.
        #expect(g.next() == 1_546_998_764_402_558_742)
        #expect(g.next() == 6_990_951_692_964_543_102)
        let saved = g.stateWords
        let third = g.next()
        #expect(third == 12_544_586_762_248_559_009)
        var replay = Xoshiro256(state: saved)
        #expect(replay.next() == third)
        var a = Xoshiro256(seed: 7), b = Xoshiro256(seed: 7)
        #expect(a.permutation(1000) == b.permutation(1000))
        #expect(Set(a.permutation(1000)) == Set(0..<1000))
        var sum = 0.0, squares = 0.0
        for _ in 0..<20000 { let x = Double(a.normal()); sum += x; squares += x * x }
        #expect(abs(sum / 20000) < 0.03 && abs(squares / 20000 - 1) < 0.05)
    }
}
