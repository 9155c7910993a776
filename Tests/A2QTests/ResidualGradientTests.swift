import A2QCore
import A2QNN
import A2QQuant
import Foundation
import Testing

/// Composition: residual blocks (identity and projection shortcuts), nested sequences and a
/// quantized residual block, each against a Float64 reference built from the layers'
/// definitions, with central finite differences for every input and parameter gradient.
@Suite("Residual blocks and nested Sequential against Float64 finite differences")
struct ResidualGradientTests {
    /// `conv` in Float64 from a parameter slice (weight then optional bias).
    static func conv(_ x: [Double], _ p: [Double], _ layer: Conv2d, n: Int, h: Int, w: Int) -> [Double] {
        let weights = Array(p[layer.weight.range])
        let bias = layer.bias.map { Array(p[$0.range]) }
        return naiveConvolution(x, n: n, c: layer.inChannels, h: h, w: w, weight: weights, bias: bias,
                                outChannels: layer.outChannels, kernel: layer.kernelHeight, stride: layer.stride, padding: layer.padding)
    }

    @Test("Residual with an identity shortcut: y = conv(conv(x)) + x")
    func identity() throws {
        var layout = ParameterLayout()
        let c1 = try Conv2d(name: "b.conv1", inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, layout: &layout)
        let c2 = try Conv2d(name: "b.conv2", inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, bias: false, layout: &layout)
        let block = Residual(name: "b", body: Sequential(name: "b.body", layers: [c1, c2]))
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 3)
        randomize(store, &g)
        let (n, h, w) = (2, 4, 5)
        let x = randomTensor([n, 2, h, w], &g)
        checkLayer(block, store: store, input: x) { x, p in
            let y = Self.conv(Self.conv(x, p, c1, n: n, h: h, w: w), p, c2, n: n, h: h, w: w)
            return zip(y, x).map { $0 + $1 }
        }
    }

    @Test("Residual with a strided projection shortcut (1×1 conv, stride 2) and BatchNorm in the body")
    func projection() throws {
        var layout = ParameterLayout()
        let c1 = try Conv2d(name: "b.conv1", inChannels: 2, outChannels: 3, kernelSize: 3, stride: 2, padding: 1, layout: &layout)
        let bn = BatchNorm(name: "b.bn1", channels: 3, layout: &layout)
        let c2 = try Conv2d(name: "b.conv2", inChannels: 3, outChannels: 3, kernelSize: 3, padding: 1, layout: &layout)
        let sc = try Conv2d(name: "b.shortcut.conv", inChannels: 2, outChannels: 3, kernelSize: 1, stride: 2, padding: 0,
                            bias: false, layout: &layout)
        let block = Residual(name: "b", body: Sequential(name: "b.body", layers: [c1, bn, c2]),
                             shortcut: Sequential(name: "b.shortcut", layers: [sc]))
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 5)
        randomize(store, &g)
        let (n, h, w) = (3, 6, 5)
        let x = randomTensor([n, 2, h, w], &g)
        let (ho, wo) = c1.outputSize(height: h, width: w)
        checkLayer(block, store: store, input: x) { x, p in
            var z = Self.conv(x, p, c1, n: n, h: h, w: w)
            // BatchNorm, training mode: batch mean and biased variance per channel.
            let plane = ho * wo, m = Double(n * plane)
            for ch in 0..<3 {
                var mean = 0.0, variance = 0.0
                for b in 0..<n { for i in 0..<plane { mean += z[(b * 3 + ch) * plane + i] } }
                mean /= m
                for b in 0..<n { for i in 0..<plane { variance += pow(z[(b * 3 + ch) * plane + i] - mean, 2) } }
                variance /= m
                let gamma = p[bn.scale.offset + ch], beta = p[bn.shift.offset + ch]
                for b in 0..<n {
                    for i in 0..<plane {
                        let k = (b * 3 + ch) * plane + i
                        z[k] = gamma * (z[k] - mean) / (variance + 1e-5).squareRoot() + beta
                    }
                }
            }
            let body = Self.conv(z, p, c2, n: n, h: ho, w: wo)
            let shortcut = Self.conv(x, p, sc, n: n, h: h, w: w)
            return zip(body, shortcut).map { $0 + $1 }
        }
    }

    @Test("Nested Sequential: linear → (linear → linear) → linear; the walk and the names follow the tree")
    func nested() throws {
        var layout = ParameterLayout()
        let a = try Linear(name: "a", inputs: 4, outputs: 5, layout: &layout)
        let b = try Linear(name: "inner.b", inputs: 5, outputs: 3, layout: &layout)
        let c = try Linear(name: "inner.c", inputs: 3, outputs: 3, bias: false, layout: &layout)
        let d = try Linear(name: "d", inputs: 3, outputs: 2, layout: &layout)
        let inner = Sequential(name: "inner", layers: [b, c])
        let outer = Sequential(name: "outer", layers: [a, inner, d])
        #expect(outer.leaves.map(\.name) == ["a", "inner.b", "inner.c", "d"])
        #expect(outer.walk.map(\.name) == ["outer", "a", "inner", "inner.b", "inner.c", "d"])
        let store = ParameterStore(layout: layout)
        var g = Xoshiro256(seed: 9)
        randomize(store, &g)
        let n = 3
        let x = randomTensor([n, 4], &g)
        func linear(_ x: [Double], _ p: [Double], _ l: Linear) -> [Double] {
            let bias = l.bias.map { Array(p[$0.range]) }
            var y = [Double](repeating: 0, count: n * l.outputs)
            for s in 0..<n {
                for o in 0..<l.outputs {
                    var sum = bias?[o] ?? 0
                    for i in 0..<l.inputs { sum += x[s * l.inputs + i] * p[l.weight.offset + o * l.inputs + i] }
                    y[s * l.outputs + o] = sum
                }
            }
            return y
        }
        checkLayer(outer, store: store, input: x) { x, p in linear(linear(linear(linear(x, p, a), p, b), p, c), p, d) }
    }

    @Test("Quantized residual block: A2Q+ on both convolutions, identity shortcut, straight-through surrogate")
    func quantized() throws {
        var layout = ParameterLayout()
        let spec = WeightQuantizerSpec(kind: .a2qPlus, weightBits: 5, accumulatorBits: 16)
        let format = InputFormat(bits: 5, signed: true)
        let c1 = try Conv2d(name: "b.conv1", inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, quantizer: spec,
                            input: format, layout: &layout)
        let c2 = try Conv2d(name: "b.conv2", inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, quantizer: spec,
                            input: format, layout: &layout)
        let block = Residual(name: "b", body: Sequential(name: "b.body", layers: [c1, c2]))
        let store = ParameterStore(layout: layout)
        // Parameters away from every rounding boundary of both quantizers, clamps active.
        var g = Xoshiro256(seed: 31)
        var surrogates: [SurrogateQuantizer] = []
        for _ in 0..<400 {
            randomize(store, &g, low: -1, high: 1)
            for q in [c1.quantizer, c2.quantizer] {
                q.initializeFromFloatWeights(store)
                if let logNorm = q.logNorm, let logScale = q.logScale {
                    for o in 0..<q.outChannels {
                        store.value(logNorm)[o] = store.value(logScale)[o] + Float(log2(q.bound)) - g.uniform(0.3, 1.5)
                    }
                }
            }
            let p0 = store.valuesArray().map(Double.init)
            surrogates = [c1.quantizer, c2.quantizer].map { SurrogateQuantizer(kind: .a2qPlus, quantizer: $0, parameters: p0) }
            if surrogates.allSatisfy({ $0.closestBoundary > 1e-3 }) { break }
            surrogates = []
        }
        try #require(surrogates.count == 2, "no parameters away from rounding boundaries")
        let (n, h, w) = (2, 4, 4)
        let x = randomTensor([n, 2, h, w], &g)
        checkLayer(block, store: store, input: x) { x, p in
            func conv(_ x: [Double], _ layer: Conv2d, _ s: SurrogateQuantizer) -> [Double] {
                naiveConvolution(x, n: n, c: 2, h: h, w: w, weight: s.weights(p), bias: layer.bias.map { Array(p[$0.range]) },
                                 outChannels: 2, kernel: 3, stride: 1, padding: 1)
            }
            let y = conv(conv(x, c1, surrogates[0]), c2, surrogates[1])
            return zip(y, x).map { $0 + $1 }
        }
    }

    @Test("Network: forward through a leaf inside a block stops there; backward reports leaves in exact reverse order")
    func walkAndEarlyStop() throws {
        var layout = ParameterLayout()
        let stem = try Conv2d(name: "stem", inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, layout: &layout)
        let c1 = try Conv2d(name: "b.conv1", inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1, layout: &layout)
        let sc = try Conv2d(name: "b.shortcut.conv", inChannels: 2, outChannels: 2, kernelSize: 1, layout: &layout)
        let block = Residual(name: "b.residual", body: Sequential(name: "b.body", layers: [c1]),
                             shortcut: Sequential(name: "b.shortcut", layers: [sc]))
        let pool = GlobalAvgPool(name: "pool")
        let network = Network(layers: [stem, block, ReLU(name: "relu"), pool], layout: layout)
        var g = Xoshiro256(seed: 1)
        network.initialize(generator: &g)
        let x = randomTensor([2, 1, 5, 5], &g)
        let inside = try #require(network.forward(x, training: false, through: "b.shortcut.conv"))
        #expect(inside.shape == [2, 2, 5, 5])
        let expected = sc.forward(stem.forward(x, parameters: network.parameters, training: false), parameters: network.parameters, training: false)
        #expect(inside.array == expected.array)
        #expect(network.forward(x, training: false, through: "nothing") == nil)
        let y = network.forward(x, training: true)
        var order: [Int] = []
        network.backward(Tensor(shape: y.shape, values: Array(repeating: 1, count: y.count))) { order.append($0) }
        #expect(network.leaves.map(\.name) == ["stem", "b.conv1", "b.shortcut.conv", "relu", "pool"])
        #expect(order == [4, 3, 2, 1, 0])
    }
}
