import A2QCore
import Foundation

/// What an imported model expects as input, in terms of what a2q feeds it. a2q's models take
/// images as `p = pixel / 255` in [0, 1] (the 8-bit input quantizer has scale 1/255); a PyTorch
/// model takes whatever its data pipeline made: `x = (scale · p − mean) / std` per channel
/// (`--input-scale 255` for a model trained on raw 0–255 values; `--input-mean/--input-std` for
/// a `transforms.Normalize` outside the model). The importer folds this map, and any
/// normalisation inside the graph, into the first layer, so the imported model takes a2q's `p`.
public struct InputConventions: Codable, Equatable, Sendable {
    /// The factor from `p` to the model's unnormalised input (1: [0, 1]; 255: raw pixel values).
    public var scale: Double
    /// Per-channel means (one value: every channel).
    public var mean: [Double]
    /// Per-channel standard deviations (one value: every channel).
    public var std: [Double]

    public init(scale: Double = 1, mean: [Double] = [0], std: [Double] = [1]) {
        self.scale = scale
        self.mean = mean
        self.std = std
    }

    /// `x = p`: nothing to fold.
    public static let identity = InputConventions()

    public var isIdentity: Bool { self == .identity }

    /// Parses the command line's comma-separated lists (`0.4914,0.4822,0.4465`).
    public static func parse(scale: Double?, mean: String?, std: String?) throws -> InputConventions {
        func list(_ text: String?, _ flag: String) throws -> [Double]? {
            guard let text else { return nil }
            let words = text.split(separator: ",", omittingEmptySubsequences: false)
            let values = words.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.count == words.count, values.allSatisfy(\.isFinite) else {
                throw A2QError("--\(flag) \(text) is not a comma-separated list of numbers", remedy: "for example --\(flag) 0.4914,0.4822,0.4465")
            }
            return values
        }
        let conventions = InputConventions(scale: scale ?? 1, mean: try list(mean, "input-mean") ?? [0], std: try list(std, "input-std") ?? [1])
        guard conventions.scale.isFinite, conventions.scale > 0 else { throw A2QError("--input-scale must be positive (got \(conventions.scale))") }
        guard conventions.std.allSatisfy({ $0 > 0 }) else { throw A2QError("--input-std values must be positive (got \(conventions.std))") }
        return conventions
    }

    /// The map `p ↦ a·p + b` per channel, for a model with `channels` input channels.
    func affine(channels: Int) throws -> (a: [Double], b: [Double]) {
        func perChannel(_ values: [Double], _ flag: String) throws -> [Double] {
            if values.count == 1 { return [Double](repeating: values[0], count: channels) }
            guard values.count == channels else {
                throw A2QError("--\(flag) has \(values.count) values, but the model's input has \(channels) channel\(channels == 1 ? "" : "s")",
                               remedy: "give one value, or one per channel")
            }
            return values
        }
        let m = try perChannel(mean, "input-mean"), s = try perChannel(std, "input-std")
        return ((0..<channels).map { scale / s[$0] }, (0..<channels).map { -m[$0] / s[$0] })
    }

    /// `scale 1, mean [0.4914, 0.4822, 0.4465], std [...]` for messages.
    public var summary: String {
        func text(_ v: [Double]) -> String { v.count == 1 ? "\(v[0])" : "[" + v.map { "\($0)" }.joined(separator: ", ") + "]" }
        return "scale \(scale), mean \(text(mean)), std \(text(std))"
    }
}
