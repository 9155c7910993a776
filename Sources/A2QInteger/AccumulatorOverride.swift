import A2QCore

/// What-if accumulator widths for `eval --integer` and `verify`.
///
/// `--accumulator-bits P` sets the hidden weight layers: every weight layer but the first and
/// the last, the layers A2Q and A2Q+ constrain by default (`--first-last unconstrained`), so a
/// qat model and an A2Q+ model are compared like with like. `--layer-accumulator-bits NAME=P`
/// sets any one layer and wins over the hidden-layer value; for a tiled layer P is its tile
/// register's width, and `NAME.outer=P` sets its outer register.
public struct AccumulatorOverride: Sendable, Equatable {
    /// P for the hidden weight layers, if given.
    public var hidden: Int?
    /// P per named layer.
    public var layers: [String: Int]

    public init(hidden: Int? = nil, layers: [String: Int] = [:]) {
        self.hidden = hidden
        self.layers = layers
    }

    /// Parses `--layer-accumulator-bits` arguments of the form `NAME=P`.
    public init(hidden: Int?, layerArguments: [String]) throws {
        var layers: [String: Int] = [:]
        for argument in layerArguments {
            let parts = argument.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, let bits = Int(parts[1]) else {
                throw A2QError("--layer-accumulator-bits '\(argument)' is not NAME=P", remedy: "for example --layer-accumulator-bits conv2=14")
            }
            layers[String(parts[0])] = bits
        }
        self.init(hidden: hidden, layers: layers)
    }

    public var isEmpty: Bool { hidden == nil && layers.isEmpty }

    /// P for each overridden layer of `model`; unknown names and widths outside 2...62 are errors.
    public func bits(for model: IntegerModel) throws -> [String: Int] {
        let names = model.layers.map(\.name), pools = model.pools.map(\.name)
        var out: [String: Int] = [:]
        if let hidden {
            try Self.check(hidden, "--accumulator-bits")
            for name in names.dropFirst().dropLast() { out[name] = hidden }
        }
        let tiled = model.layers.filter { $0.accumulatorTile != nil }.map { $0.name + ".outer" }
        for (name, bits) in layers.sorted(by: { $0.key < $1.key }) {
            guard names.contains(name) || pools.contains(name) || tiled.contains(name) else {
                throw A2QError("--layer-accumulator-bits names \(name), which is not a weight layer or pool of \(model.model)",
                               remedy: "its weight layers are \(names.joined(separator: ", "))" + (pools.isEmpty ? "" : "; its pools \(pools.joined(separator: ", "))"))
            }
            try Self.check(bits, "--layer-accumulator-bits \(name)")
            out[name] = bits
        }
        return out
    }

    static func check(_ bits: Int, _ flag: String) throws {
        guard (2...62).contains(bits) else { throw A2QError("\(flag) \(bits) is outside the supported range 2...62") }
    }
}

extension IntegerModel {
    /// The same P for every weight layer (tests and benchmarks that force the simulation).
    public func accumulatorBits(everyLayer bits: Int) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: layers.map { ($0.name, bits) })
    }
}
