#if canImport(Glibc)
import Glibc
#endif
/// What a parameter is for. Optimizers read it to decide on weight decay; quantizers and
/// checkpoints read it to find their tensors.
public enum ParameterRole: String, Sendable, Codable, CaseIterable {
    /// A weight tensor (the direction `v` of a weight-normalised quantizer). Decayed.
    case weight
    /// A bias. Not decayed.
    case bias
    /// BatchNorm scale (gamma) and shift (beta). Not decayed.
    case normalization
    /// log2 of a per-channel weight scale `s`. Not decayed.
    case logScale
    /// log2 of a per-channel weight-normalisation norm `g`. Not decayed.
    case logNorm
    /// log2 of an activation quantizer's per-tensor scale. Not decayed.
    case activationLogScale

    /// Whether weight decay applies to parameters with this role (the papers decay weights only).
    public var isDecayed: Bool { self == .weight }
}

/// A named window into the contiguous parameter buffer (and the mirrored gradient buffer).
public struct ParameterView: Sendable, Hashable {
    /// Dotted name, e.g. `conv1.weight`; also its name in checkpoints.
    public let name: String
    /// First element inside the store.
    public let offset: Int
    /// Dimensions, outermost first.
    public let shape: [Int]
    /// What the parameter is for.
    public let role: ParameterRole
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Elements `[offset, offset + count)` of the store.
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Collects parameter declarations before the buffer exists (the first of two phases).
///
/// Layers declare their parameters while a model is being built; `ParameterStore(layout:)`
/// then allocates one contiguous buffer for all of them, in declaration order.
public struct ParameterLayout: Sendable {
    /// The views, in declaration order. This one list drives the all-reduce, the optimizer
    /// state and the checkpoint names.
    public private(set) var views: [ParameterView] = []
    /// Total number of elements declared so far.
    public private(set) var count = 0

    public init() {}

    /// Declares a parameter and returns its view. Names must be unique.
    public mutating func declare(_ name: String, shape: [Int], role: ParameterRole) -> ParameterView {
        precondition(!views.contains { $0.name == name }, "ParameterLayout: duplicate parameter name \(name)")
        precondition(shape.allSatisfy { $0 > 0 }, "ParameterLayout: \(name) has an empty shape \(shape)")
        let view = ParameterView(name: name, offset: count, shape: shape, role: role)
        views.append(view)
        count += view.count
        return view
    }
}

/// All trainable parameters of a model in one contiguous float32 buffer, a mirrored gradient
/// buffer, and the ordered list of named views into both.
public final class ParameterStore: @unchecked Sendable {
    /// The ordered named views.
    public let views: [ParameterView]
    /// Total element count.
    public let count: Int
    /// Parameter values.
    public let values: UnsafeMutablePointer<Float>
    /// Gradients, same layout as `values`.
    public let gradients: UnsafeMutablePointer<Float>
    private let index: [String: Int]

    /// Allocates zeroed value and gradient buffers for a layout. `calloc`: large buffers are
    /// fresh zero pages that take memory only once written, so a model that is never trained
    /// (evaluation, `a2q import`) does not pay for its gradients.
    public init(layout: ParameterLayout) {
        views = layout.views
        count = layout.count
        values = ParameterStore.zeroed(max(count, 1))
        gradients = ParameterStore.zeroed(max(count, 1))
        var index: [String: Int] = [:]
        for (i, view) in views.enumerated() { index[view.name] = i }
        self.index = index
    }

    private static func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
        guard let raw = calloc(count, MemoryLayout<Float>.stride) else {
            preconditionFailure("cannot allocate \(count) parameters (\(count * 4) bytes)")
        }
        return raw.bindMemory(to: Float.self, capacity: count)
    }

    deinit {
        free(values)
        free(gradients)
    }

    /// The view named `name`, if any.
    public func view(named name: String) -> ParameterView? { index[name].map { views[$0] } }

    /// Values of one view (a window into the buffer, not a copy).
    @inline(__always)
    public func value(_ view: ParameterView) -> UnsafeMutablePointer<Float> { values + view.offset }

    /// Gradients of one view (a window into the gradient buffer).
    @inline(__always)
    public func gradient(_ view: ParameterView) -> UnsafeMutablePointer<Float> { gradients + view.offset }

    /// Sets every gradient to zero (once per step, before backward).
    public func zeroGradients() { gradients.update(repeating: 0, count: count) }

    /// A copy of all values (for tests, checksums and I/O).
    public func valuesArray() -> [Float] { Array(UnsafeBufferPointer(start: values, count: count)) }

    /// A copy of all gradients.
    public func gradientsArray() -> [Float] { Array(UnsafeBufferPointer(start: gradients, count: count)) }

    /// Overwrites all values from `source` (same count).
    public func setValues(_ source: [Float]) {
        precondition(source.count == count, "ParameterStore: \(source.count) values for \(count) parameters")
        values.update(from: source, count: count)
    }

    /// FNV-1a hash of the raw bits of every value: equal across ranks iff bitwise equal (with
    /// overwhelming probability).
    public func checksum() -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<count {
            hash = (hash ^ UInt64(values[i].bitPattern)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
