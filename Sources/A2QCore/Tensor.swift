/// A float32, row-major (NCHW) buffer with a shape, allocated once and reused.
///
/// Layers own the tensors they write (outputs, input gradients, scratch) and resize them
/// only when the batch shape changes, so a steady-state training step allocates nothing.
/// `Tensor` is a reference type on purpose: it owns memory that views point into.
public final class Tensor: @unchecked Sendable {
    /// The elements; valid for `count` floats.
    public private(set) var data: UnsafeMutablePointer<Float>
    /// Dimensions, outermost first.
    public private(set) var shape: [Int]
    /// Number of elements (product of `shape`).
    public private(set) var count: Int
    private var capacity: Int
    private var owner: Bool

    /// Creates a zero-filled tensor of the given shape.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.capacity = max(count, 1)
        self.owner = true
        self.data = .allocate(capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
    }

    /// A non-owning view of `other`'s elements with another shape of the same element count
    /// (e.g. Flatten). Call `rebind(to:shape:)` whenever the viewed tensor may have changed.
    public init(viewing other: Tensor, shape: [Int]) {
        precondition(shape.reduce(1, *) == other.count, "Tensor view: shape \(shape) does not match \(other.shape)")
        self.data = other.data
        self.shape = shape
        self.count = other.count
        self.capacity = other.count
        self.owner = false
    }

    /// Points a view at `other`'s elements with `shape`.
    public func rebind(to other: Tensor, shape newShape: [Int]) {
        precondition(!owner, "Tensor.rebind: only views can be rebound")
        precondition(newShape.reduce(1, *) == other.count, "Tensor view: shape \(newShape) does not match \(other.shape)")
        data = other.data
        if newShape != shape { shape = newShape }
        count = other.count
        capacity = other.count
    }

    /// Creates a tensor holding a copy of `values`.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape)")
        data.update(from: values, count: count)
    }

    deinit { if owner { data.deallocate() } }

    /// Changes the shape; reallocates only if the new shape needs more room.
    /// Contents are unspecified afterwards unless the element count is unchanged.
    public func reshape(_ newShape: [Int]) {
        if newShape == shape { return }
        precondition(owner, "Tensor.reshape: a view cannot be reshaped; rebind it")
        let newCount = newShape.reduce(1, *)
        if newCount > capacity {
            data.deallocate()
            capacity = newCount
            data = .allocate(capacity: capacity)
            data.initialize(repeating: 0, count: capacity)
        }
        shape = newShape
        count = newCount
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// The elements as a buffer pointer (a view, not a copy).
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// A copy of the elements as an array (for tests and I/O, not for hot paths).
    public var array: [Float] { Array(buffer) }

    /// Element access by flat index (for tests and cold paths).
    public subscript(index: Int) -> Float {
        get { data[index] }
        set { data[index] = newValue }
    }
}
