import A2QCore
import A2QNN
import A2QQuant
import Testing

@Suite("Layer forward and backward against Float64 finite differences")
struct LayerGradientTests {
    @Test("Linear", arguments: [(1, 3, 2), (4, 7, 5), (3, 1, 1), (2, 16, 9)])
    func linear(shape: (Int, Int, Int)) throws {
        let (batch, inputs, outputs) = shape
        var layout = ParameterLayout()
        let layer = try Linear(name: "fc", inputs: inputs, outputs: outputs, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: UInt64(batch * 100 + inputs))
        randomize(store, &g)
        let x = randomTensor([batch, inputs], &g)
        checkLayer(layer, store: store, input: x) { x, p in
            var y = [Double](repeating: 0, count: batch * outputs)
            for n in 0..<batch {
                for o in 0..<outputs {
                    var s = p[outputs * inputs + o]
                    for i in 0..<inputs { s += x[n * inputs + i] * p[o * inputs + i] }
                    y[n * outputs + o] = s
                }
            }
            return y
        }
    }

    struct ConvCase: Sendable, CustomTestStringConvertible {
        let n, c, h, w, out, k, stride, pad: Int
        var testDescription: String { "N\(n) C\(c) \(h)x\(w) → \(out), k\(k) s\(stride) p\(pad)" }
    }

    static let convCases: [ConvCase] = [
        .init(n: 1, c: 1, h: 5, w: 5, out: 2, k: 3, stride: 1, pad: 1),
        .init(n: 2, c: 3, h: 7, w: 5, out: 4, k: 3, stride: 2, pad: 0),
        .init(n: 1, c: 2, h: 6, w: 9, out: 3, k: 3, stride: 2, pad: 1),
        .init(n: 3, c: 2, h: 5, w: 4, out: 2, k: 2, stride: 1, pad: 0),
        .init(n: 2, c: 1, h: 9, w: 7, out: 3, k: 5, stride: 2, pad: 1),
        .init(n: 1, c: 4, h: 3, w: 3, out: 5, k: 1, stride: 1, pad: 0),
    ]

    @Test("Conv2d (oneDNN and im2col)", arguments: convCases, [Conv2d.Backend.onednn, .im2col])
    func conv2d(_ t: ConvCase, backend: Conv2d.Backend) throws {
        var layout = ParameterLayout()
        let layer = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k,
                               stride: t.stride, padding: t.pad, backend: backend, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: UInt64(t.h * 31 + t.w))
        randomize(store, &g)
        let x = randomTensor([t.n, t.c, t.h, t.w], &g)
        let weights = t.out * t.c * t.k * t.k
        checkLayer(layer, store: store, input: x) { x, p in
            naiveConvolution(x, n: t.n, c: t.c, h: t.h, w: t.w, weight: Array(p[0..<weights]),
                             bias: Array(p[weights...]), outChannels: t.out, kernel: t.k, stride: t.stride, padding: t.pad)
        }
    }

    @Test("Conv2d over a batch equals the same layer run image by image (im2col: a batch of several L2-sized chunks; oneDNN: primitives for two batch sizes) — outputs, input and weight gradients; float and A2Q+",
          arguments: [WeightQuantizerKind.float, .a2qPlus], [Conv2d.Backend.im2col, .onednn])
    func conv2dChunks(kind: WeightQuantizerKind, backend: Conv2d.Backend) throws {
        // 8 channels of 32×32 with a 3×3 kernel: 73,728 column values per image, so each image is its own chunk.
        var layout = ParameterLayout()
        let spec = kind == .float ? WeightQuantizerSpec.float : WeightQuantizerSpec(kind: kind, weightBits: 8, accumulatorBits: 20)
        let conv = try Conv2d(name: "conv", inChannels: 8, outChannels: 6, kernelSize: 3, padding: 1, quantizer: spec,
                              input: InputFormat(bits: 8, signed: true), backend: backend, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 12)
        randomize(store, &g)
        conv.quantizer.initializeFromFloatWeights(store)
        let (n, plane) = (3, 8 * 32 * 32)
        let x = randomTensor([n, 8, 32, 32], &g), dy = randomTensor([n, 6, 32, 32], &g)
        store.zeroGradients()
        let y = conv.forward(x, parameters: store, training: true).array
        let dx = conv.backward(dy, parameters: store).array
        let batched = store.gradientsArray()
        var weightGradient = [Float](repeating: 0, count: batched.count)
        for image in 0..<n {
            let xi = Tensor(shape: [1, 8, 32, 32], values: Array(x.array[(image * plane)..<((image + 1) * plane)]))
            let dyi = Tensor(shape: [1, 6, 32, 32], values: Array(dy.array[(image * 6 * 1024)..<((image + 1) * 6 * 1024)]))
            store.zeroGradients()
            #expect(conv.forward(xi, parameters: store, training: true).array == Array(y[(image * 6 * 1024)..<((image + 1) * 6 * 1024)]))
            #expect(conv.backward(dyi, parameters: store).array == Array(dx[(image * plane)..<((image + 1) * plane)]))
            for (k, v) in store.gradientsArray().enumerated() { weightGradient[k] += v }
        }
        let worst = zip(batched, weightGradient).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst < 1e-4, "weight gradients differ by \(worst)")
        #expect(batched.contains { $0 != 0 })
    }

    struct GroupedConvCase: Sendable, CustomTestStringConvertible {
        let n, c, h, w, out, k, stride, pad, groups: Int
        var testDescription: String { "N\(n) C\(c) \(h)x\(w) → \(out), k\(k) s\(stride) p\(pad) groups \(groups)" }
    }

    /// Depthwise (groups = C, with a channel multiplier of 1 and 2), grouped, grouped 1×1, and
    /// four random geometries (seeded).
    static let groupedConvCases: [GroupedConvCase] = {
        var cases: [GroupedConvCase] = [
            .init(n: 2, c: 4, h: 5, w: 6, out: 4, k: 3, stride: 1, pad: 1, groups: 4),
            .init(n: 1, c: 3, h: 7, w: 5, out: 6, k: 3, stride: 2, pad: 1, groups: 3),
            .init(n: 2, c: 6, h: 5, w: 5, out: 4, k: 3, stride: 1, pad: 0, groups: 2),
            .init(n: 1, c: 8, h: 4, w: 4, out: 12, k: 1, stride: 1, pad: 0, groups: 4),
        ]
        var g = Xoshiro256(seed: 2024)
        for _ in 0..<4 {
            let groups = Int.random(in: 1...4, using: &g), k = [1, 3, 5].randomElement(using: &g) ?? 3
            cases.append(.init(n: Int.random(in: 1...3, using: &g), c: groups * Int.random(in: 1...3, using: &g),
                               h: Int.random(in: k...8, using: &g), w: Int.random(in: k...8, using: &g),
                               out: groups * Int.random(in: 1...3, using: &g), k: k, stride: Int.random(in: 1...2, using: &g),
                               pad: Int.random(in: 0...k / 2, using: &g), groups: groups))
        }
        return cases
    }()

    @Test("Conv2d with groups, depthwise included (oneDNN and im2col): forward, input, weight and bias gradients against finite differences of a Float64 grouped convolution",
          arguments: groupedConvCases, [Conv2d.Backend.onednn, .im2col])
    func groupedConv2d(_ t: GroupedConvCase, backend: Conv2d.Backend) throws {
        var layout = ParameterLayout()
        let layer = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k, stride: t.stride,
                               padding: t.pad, groups: t.groups, backend: backend, layout: &layout)
        #expect(layer.weight.shape == [t.out, t.c / t.groups, t.k, t.k] && layer.fanIn == t.c / t.groups * t.k * t.k
                && layer.quantizer.fanIn == layer.fanIn)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: UInt64(t.h * 31 + t.w + t.groups))
        randomize(store, &g)
        let x = randomTensor([t.n, t.c, t.h, t.w], &g)
        let weights = t.out * t.c / t.groups * t.k * t.k
        checkLayer(layer, store: store, input: x) { x, p in
            naiveConvolution(x, n: t.n, c: t.c, h: t.h, w: t.w, weight: Array(p[0..<weights]), bias: Array(p[weights...]),
                             outChannels: t.out, kernel: t.k, stride: t.stride, padding: t.pad, groups: t.groups)
        }
    }

    /// MobileNet's shapes (depthwise 3×3 over 16–64 channels, strided, with a channel multiplier;
    /// grouped 3×3 and 1×1), where oneDNN runs its depthwise and grouped kernels: oneDNN equals
    /// im2col + sgemm (checked against finite differences above), and a batch of several L2-sized
    /// chunks equals the same layer run image by image.
    @Test("Conv2d with groups: oneDNN's primitives agree with im2col + sgemm on MobileNet's shapes; a batch equals image by image (A2Q+ weights)")
    func groupedConv2dBackendsAgree() throws {
        let cases: [(c: Int, h: Int, out: Int, k: Int, stride: Int, groups: Int)] = [
            (32, 28, 32, 3, 1, 32), (32, 28, 32, 3, 2, 32), (16, 14, 32, 3, 1, 16), (64, 7, 64, 3, 1, 64),
            (32, 14, 64, 3, 1, 4), (64, 14, 32, 1, 1, 2), (16, 32, 32, 3, 1, 2),  // the last: one image per L2 chunk
        ]
        var g = Xoshiro256(seed: 77)
        for t in cases {
            var layouts = (ParameterLayout(), ParameterLayout())
            let spec = WeightQuantizerSpec(kind: .a2qPlus, weightBits: 8, accumulatorBits: 18)
            let input = InputFormat(bits: 8, signed: false)
            let fast = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k, stride: t.stride, padding: t.k / 2,
                                  groups: t.groups, quantizer: spec, input: input, backend: .onednn, layout: &layouts.0)
            let slow = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k, stride: t.stride, padding: t.k / 2,
                                  groups: t.groups, quantizer: spec, input: input, backend: .im2col, layout: &layouts.1)
            let stores = (ParameterStore(layout: layouts.0), ParameterStore(layout: layouts.1))
            randomize(stores.0, &g)
            fast.quantizer.initializeFromFloatWeights(stores.0)
            stores.1.values.update(from: stores.0.values, count: stores.0.count)
            let batch = 6
            let x = randomTensor([batch, t.c, t.h, t.h], &g)
            let y = (fast.forward(x, parameters: stores.0, training: true).array, slow.forward(x, parameters: stores.1, training: true).array)
            let what = "C\(t.c) \(t.h)x\(t.h) → \(t.out) k\(t.k) s\(t.stride) groups \(t.groups) [\(fast.implementation)]"
            #expect(fast.implementation != slow.implementation && slow.implementation == "im2col + sgemm", "oneDNN built no grouped primitives: \(what)")
            let dy = randomTensor(fast.outputShape, &g)
            stores.0.zeroGradients()
            stores.1.zeroGradients()
            let dx = (fast.backward(dy, parameters: stores.0).array, slow.backward(dy, parameters: stores.1).array)
            let dp = (stores.0.gradientsArray(), stores.1.gradientsArray())
            #expect(relativeDifference(y.0, y.1) < 1e-5, "output, \(what)")
            #expect(relativeDifference(dp.0, dp.1) < 1e-5, "parameter gradients, \(what)")
            #expect(relativeDifference(dx.0, dx.1) < 1e-5, "input gradient, \(what)")
            #expect(dp.0.contains { $0 != 0 })
            // Image by image on the im2col path (one primitive set per batch size on oneDNN's).
            let (plane, outPlane) = (t.c * t.h * t.h, y.1.count / batch)
            var summed = [Float](repeating: 0, count: dp.1.count)
            for image in 0..<batch {
                let xi = Tensor(shape: [1, t.c, t.h, t.h], values: Array(x.array[(image * plane)..<((image + 1) * plane)]))
                let dyi = Tensor(shape: [1] + Array(fast.outputShape.dropFirst()),
                                 values: Array(dy.array[(image * outPlane)..<((image + 1) * outPlane)]))
                stores.1.zeroGradients()
                let yi = slow.forward(xi, parameters: stores.1, training: true).array
                #expect(relativeDifference(yi, Array(y.1[(image * outPlane)..<((image + 1) * outPlane)])) < 1e-6, "image \(image) output, \(what)")
                let dxi = slow.backward(dyi, parameters: stores.1).array
                #expect(relativeDifference(dxi, Array(dx.1[(image * plane)..<((image + 1) * plane)])) < 1e-6, "image \(image) input gradient, \(what)")
                for (k, v) in stores.1.gradientsArray().enumerated() { summed[k] += v }
            }
            #expect(relativeDifference(summed, dp.1) < 1e-4, "weight gradients image by image, \(what)")
        }
    }

    /// The ResNets' shapes (16–64 channels, where oneDNN runs its blocked-layout kernels), odd ones
    /// and random ones: oneDNN's convolution equals im2col + sgemm (checked above against finite
    /// differences) up to summation order, with and without bias and input gradient, and across
    /// batch and image sizes that switch between cached primitives.
    @Test("Conv2d: oneDNN's primitives agree with im2col + sgemm on the ResNet shapes and random ones")
    func conv2dBackendsAgree() throws {
        var g = Xoshiro256(seed: 41)
        var cases: [(c: Int, h: Int, out: Int, k: Int, stride: Int, pad: Int, bias: Bool)] = [
            (16, 28, 16, 3, 1, 1, false), (16, 28, 32, 3, 2, 1, false), (16, 28, 32, 1, 2, 0, false),
            (32, 14, 64, 3, 2, 1, false), (64, 7, 64, 3, 1, 1, false), (3, 32, 16, 3, 1, 1, true), (1, 28, 16, 3, 1, 1, false),
        ]
        for _ in 0..<6 {
            let k = [1, 3, 5].randomElement(using: &g)!
            cases.append((Int.random(in: 1...40, using: &g), Int.random(in: k...17, using: &g), Int.random(in: 1...40, using: &g),
                          k, Int.random(in: 1...2, using: &g), Int.random(in: 0...k / 2, using: &g), Bool.random(using: &g)))
        }
        for t in cases {
            var layouts = (ParameterLayout(), ParameterLayout())
            let fast = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k, stride: t.stride,
                                  padding: t.pad, bias: t.bias, backend: .onednn, layout: &layouts.0)
            let slow = try Conv2d(name: "conv", inChannels: t.c, outChannels: t.out, kernelSize: t.k, stride: t.stride,
                                  padding: t.pad, bias: t.bias, backend: .im2col, layout: &layouts.1)
            let stores = (ParameterStore(layout: layouts.0), ParameterStore(layout: layouts.1))
            randomize(stores.0, &g)
            stores.1.values.update(from: stores.0.values, count: stores.0.count)
            let what = "C\(t.c) \(t.h)x\(t.h) → \(t.out) k\(t.k) s\(t.stride) p\(t.pad) bias \(t.bias) [\(fast.implementation)]"
            // Batch sizes and image sizes that switch between cached primitives, and back.
            for (batch, grow, inputGradient) in [(5, 0, true), (2, 0, false), (5, 2, true), (5, 0, true)] {
                fast.computesInputGradient = inputGradient
                slow.computesInputGradient = inputGradient
                let x = randomTensor([batch, t.c, t.h + grow, t.h + grow], &g)
                let y = (fast.forward(x, parameters: stores.0, training: true).array,
                         slow.forward(x, parameters: stores.1, training: true).array)
                let dy = randomTensor(fast.outputShape, &g)
                stores.0.zeroGradients()
                stores.1.zeroGradients()
                let dx = (fast.backward(dy, parameters: stores.0).array, slow.backward(dy, parameters: stores.1).array)
                let dp = (stores.0.gradientsArray(), stores.1.gradientsArray())
                #expect(relativeDifference(y.0, y.1) < 1e-5, "output, \(what), batch \(batch), +\(grow)")
                #expect(relativeDifference(dp.0, dp.1) < 1e-5, "parameter gradients, \(what), batch \(batch)")
                if inputGradient { #expect(relativeDifference(dx.0, dx.1) < 1e-5, "input gradient, \(what), batch \(batch)") }
                #expect(dp.0.contains { $0 != 0 })
            }
        }
    }

    /// max |a − b| / max(1, max |b|).
    private func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        let scale = max(1, b.map { abs($0) }.max() ?? 0)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    @Test("ReLU")
    func relu() {
        let layer = ReLU(name: "relu")
        let store = ParameterStore(layout: ParameterLayout())
        var g = Xoshiro256(seed: 3)
        let x = randomTensor([3, 2, 3, 5], &g, margin: 0.01)
        checkLayer(layer, store: store, input: x) { x, _ in x.map { max($0, 0) } }
    }

    @Test("MaxPool2d", arguments: [(2, 2, 4, 6), (1, 3, 5, 7)])
    func maxPool(shape: (Int, Int, Int, Int)) {
        let (n, c, h, w) = shape
        let layer = MaxPool2d(name: "pool", kernelSize: 2)
        let store = ParameterStore(layout: ParameterLayout())
        var g = Xoshiro256(seed: 11)
        let x = randomTensor([n, c, h, w], &g)
        checkLayer(layer, store: store, input: x) { x, _ in
            let ho = h / 2, wo = w / 2
            var y = [Double](repeating: 0, count: n * c * ho * wo)
            for p in 0..<(n * c) {
                for i in 0..<ho {
                    for j in 0..<wo {
                        var m = -Double.infinity
                        for a in 0..<2 { for b in 0..<2 { m = max(m, x[p * h * w + (2 * i + a) * w + 2 * j + b]) } }
                        y[(p * ho + i) * wo + j] = m
                    }
                }
            }
            return y
        }
    }

    /// Random average-pool geometries: kernel 1–4, stride 1–3, padding 0 to kernel/2, inputs
    /// from the smallest the padded window fits up to 9×9, batches of 1–3 and 1–3 channels.
    static let avgPoolCases: [UInt64] = Array(1...12)

    @Test("AvgPool2d over random shapes, strides and paddings (padding counted in the divisor, floor mode)", arguments: avgPoolCases)
    func avgPool(seed: UInt64) {
        var g = Xoshiro256(seed: 1000 + seed)
        func draw(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(g.next() % UInt64(range.count)) }
        let k = draw(1...4), stride = draw(1...3), pad = draw(0...(k / 2))
        let (n, c) = (draw(1...3), draw(1...3))
        let h = draw(max(1, k - 2 * pad)...9), w = draw(max(1, k - 2 * pad)...9)
        let layer = AvgPool2d(name: "avg", kernelSize: k, stride: stride, padding: pad)
        let store = ParameterStore(layout: ParameterLayout())
        let x = randomTensor([n, c, h, w], &g)
        let ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1
        print("AvgPool2d case \(seed): [\(n), \(c), \(h), \(w)], kernel \(k), stride \(stride), padding \(pad)")
        #expect(layer.forward(x, parameters: store, training: true).shape == [n, c, ho, wo], "k\(k) s\(stride) p\(pad) on \(h)×\(w)")
        checkLayer(layer, store: store, input: x) { x, _ in
            // The input padded with zeros, then every window's sum over k² (padding included).
            let hp = h + 2 * pad, wp = w + 2 * pad
            var padded = [Double](repeating: 0, count: n * c * hp * wp)
            for p in 0..<(n * c) {
                for i in 0..<h { for j in 0..<w { padded[(p * hp + i + pad) * wp + j + pad] = x[(p * h + i) * w + j] } }
            }
            var y = [Double](repeating: 0, count: n * c * ho * wo)
            for p in 0..<(n * c) {
                for i in 0..<ho {
                    for j in 0..<wo {
                        var s = 0.0
                        for a in 0..<k { for b in 0..<k { s += padded[(p * hp + i * stride + a) * wp + j * stride + b] } }
                        y[(p * ho + i) * wo + j] = s / Double(k * k)
                    }
                }
            }
            return y
        }
    }

    @Test("Global average pool and Flatten")
    func globalPoolAndFlatten() {
        let store = ParameterStore(layout: ParameterLayout())
        var g = Xoshiro256(seed: 9)
        let x = randomTensor([2, 3, 3, 5], &g)
        checkLayer(GlobalAvgPool(name: "gap"), store: store, input: x) { x, _ in
            (0..<6).map { p in x[(p * 15)..<(p * 15 + 15)].reduce(0, +) / 15 }
        }
        let flatten = Flatten(name: "flat")
        let y = flatten.forward(x, parameters: store, training: true)
        #expect(y.shape == [2, 45])
        #expect(y.data == x.data, "Flatten must be a view, not a copy")
        checkLayer(flatten, store: store, input: x) { x, _ in x }
    }

    @Test("BatchNorm in train mode, 1d and 2d", arguments: [[5, 3], [2, 3, 3, 4], [1, 2, 3, 3]])
    func batchNorm(shape: [Int]) {
        var layout = ParameterLayout()
        let c = shape[1]
        let layer = BatchNorm(name: "bn", channels: c, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 13)
        randomize(store, &g, low: 0.5, high: 1.5)
        let x = randomTensor(shape, &g)
        let n = shape[0], plane = shape.count == 4 ? shape[2] * shape[3] : 1
        checkLayer(layer, store: store, input: x) { x, p in
            var y = x
            for ch in 0..<c {
                var values: [Double] = []
                for b in 0..<n { for i in 0..<plane { values.append(x[(b * c + ch) * plane + i]) } }
                let mean = values.reduce(0, +) / Double(values.count)
                let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
                for b in 0..<n {
                    for i in 0..<plane {
                        let at = (b * c + ch) * plane + i
                        y[at] = p[ch] * (x[at] - mean) / (variance + 1e-5).squareRoot() + p[c + ch]
                    }
                }
            }
            return y
        }
    }

    @Test("BatchNorm running statistics and eval mode")
    func batchNormRunning() {
        var layout = ParameterLayout()
        let layer = BatchNorm(name: "bn", channels: 1, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 1)
        layer.initialize(store, generator: &g)
        let x = Tensor(shape: [4, 1], values: [1, 2, 3, 6])
        _ = layer.forward(x, parameters: store, training: true)
        // mean 3, unbiased variance 14/3; momentum 0.1 from (0, 1).
        #expect(abs(layer.runningMean[0] - 0.3) < 1e-6)
        #expect(abs(layer.runningVariance[0] - (0.9 + 0.1 * 14.0 / 3.0)) < 1e-5)
        let y = layer.forward(x, parameters: store, training: false)
        let expected = (1 - 0.3) / (layer.runningVariance[0] + 1e-5).squareRoot()
        #expect(abs(y[0] - expected) < 1e-5)
    }

    /// The statistics come from one pass of shifted sums: with a mean 10⁵ times the standard
    /// deviation, the batch variance and the normalised output still match a Float64 two-pass
    /// reference (plain Σx² − (Σx)²/m in float would lose every digit here).
    @Test("BatchNorm statistics when |mean| ≫ std match a Float64 two-pass reference")
    func batchNormLargeMean() {
        var layout = ParameterLayout()
        let (n, c, h) = (6, 3, 5)
        let layer = BatchNorm(name: "bn", channels: c, momentum: 1, layout: &layout)
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 5)
        layer.initialize(store, generator: &g)
        let x = Tensor(shape: [n, c, h, h])
        for i in 0..<x.count { x[i] = 1e3 * Float((i / (h * h)) % c + 1) + g.uniform(-0.01, 0.01) }
        let y = layer.forward(x, parameters: store, training: true).array
        let plane = h * h, m = Double(n * plane)
        for channel in 0..<c {
            var values: [Double] = []
            for image in 0..<n { for i in 0..<plane { values.append(Double(x[(image * c + channel) * plane + i])) } }
            let mean = values.reduce(0, +) / m
            let centred = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +)
            let unbiased = centred / (m - 1)
            #expect(abs(Double(layer.runningVariance[channel]) - unbiased) < 1e-3 * unbiased,
                    "channel \(channel): variance \(layer.runningVariance[channel]) vs \(unbiased)")
            let inverse = 1 / (centred / m + 1e-5).squareRoot()
            for image in 0..<n {
                for i in 0..<plane {
                    let k = (image * c + channel) * plane + i
                    // The mean is kept in float (an ulp of 3·10³ is 2.4·10⁻⁴, 0.04 std here): 0.1 of tolerance on y ∈ ±1.7.
                    #expect(abs(Double(y[k]) - (Double(x[k]) - mean) * inverse) < 0.1, "y[\(k)]")
                }
            }
        }
    }

    @Test("Softmax cross-entropy gradient and stability")
    func crossEntropy() {
        let loss = SoftmaxCrossEntropy()
        var g = Xoshiro256(seed: 21)
        let (n, c) = (4, 5)
        let logits = randomTensor([n, c], &g)
        let labels: [Int32] = [0, 3, 4, 1]
        func reference(_ z: [Double]) -> Double {
            var total = 0.0
            for i in 0..<n {
                let row = z[(i * c)..<(i * c + c)]
                let m = row.max()!
                let lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
                total += lse - z[i * c + Int(labels[i])]
            }
            return total / Double(n)
        }
        let value = labels.withUnsafeBufferPointer { loss.forward(logits, labels: $0) }
        let z = logits.array.map(Double.init)
        #expect(abs(Double(value) - reference(z)) < 1e-5)
        let grad = loss.backward().array
        for i in 0..<z.count {
            var plus = z, minus = z
            plus[i] += 1e-6; minus[i] -= 1e-6
            let numeric = (reference(plus) - reference(minus)) / 2e-6
            #expect(abs(Double(grad[i]) - numeric) < 1e-4)
        }
        // Huge logits stay finite.
        let big = Tensor(shape: [1, 3], values: [1000, -1000, 999])
        let stable = [Int32(2)].withUnsafeBufferPointer { loss.forward(big, labels: $0) }
        #expect(stable.isFinite && abs(stable - 1.3132616) < 1e-4)
    }

    @Test("Distillation: blended gradient against Float64 finite differences; a teacher equal to the student adds nothing", arguments: [
        (Float(0.5), Float(2)), (Float(0.9), Float(4)), (Float(1), Float(1)),
    ])
    func distillation(weight: Float, temperature: Float) {
        let loss = SoftmaxCrossEntropy()
        let distill = Distillation(weight: weight, temperature: temperature)
        var g = Xoshiro256(seed: 5)
        let (n, c) = (3, 6)
        let student = randomTensor([n, c], &g), teacher = randomTensor([n, c], &g)
        for i in 0..<teacher.count { teacher[i] *= 3 }
        let labels: [Int32] = [2, 0, 5]
        let (a, tau) = (Double(weight), Double(temperature))
        let zt = teacher.array.map(Double.init)
        func logSoftmax(_ row: ArraySlice<Double>, _ t: Double) -> [Double] {
            let scaled = row.map { $0 / t }
            let m = scaled.max()!
            let lse = m + log(scaled.map { exp($0 - m) }.reduce(0, +))
            return scaled.map { $0 - lse }
        }
        // (1 − α)·CE + α·τ²·KL(p_T ‖ p_S) at temperature τ, batch mean, written out independently.
        func objective(_ z: [Double]) -> (total: Double, soft: Double) {
            var hard = 0.0, soft = 0.0
            for i in 0..<n {
                let ls = logSoftmax(z[(i * c)..<(i * c + c)], 1)
                hard -= ls[Int(labels[i])]
                let lsT = logSoftmax(z[(i * c)..<(i * c + c)], tau), ltT = logSoftmax(zt[(i * c)..<(i * c + c)], tau)
                for j in 0..<c { soft += exp(ltT[j]) * (ltT[j] - lsT[j]) }
            }
            hard /= Double(n); soft *= tau * tau / Double(n)
            return ((1 - a) * hard + a * soft, soft)
        }
        _ = labels.withUnsafeBufferPointer { loss.forward(student, labels: $0) }
        let softValue = distill.blend(student: student, teacher: teacher, into: loss.backward())
        let z = student.array.map(Double.init)
        #expect(abs(Double(softValue) - objective(z).soft) < 1e-4 * max(1, objective(z).soft))
        let grad = loss.backward().array
        for i in 0..<z.count {
            var plus = z, minus = z
            plus[i] += 1e-6; minus[i] -= 1e-6
            let numeric = (objective(plus).total - objective(minus).total) / 2e-6
            #expect(abs(Double(grad[i]) - numeric) < 1e-4, "logit \(i): \(grad[i]) vs \(numeric)")
        }
        // Student = teacher: the soft term and its gradient vanish; the hard gradient is scaled by 1 − α.
        _ = labels.withUnsafeBufferPointer { loss.forward(student, labels: $0) }
        let hardGradient = loss.backward().array
        let same = distill.blend(student: student, teacher: student, into: loss.backward())
        #expect(abs(same) < 1e-6)
        for (blended, hard) in zip(loss.backward().array, hardGradient) {
            #expect(abs(blended - (1 - weight) * hard) < 1e-6)
        }
    }
}

import Foundation
