import A2QCore

/// The order of examples in each epoch: a permutation drawn from (seed, epoch), its tail
/// dropped to a whole number of global batches. Rank `r` of `R` takes its contiguous slice
/// of each global batch, so the sequence of global batches does not depend on `R`.
public struct EpochSampler: Sendable {
    public let count: Int
    public let globalBatch: Int
    public let seed: UInt64

    public init(count: Int, globalBatch: Int, seed: UInt64) {
        precondition(globalBatch > 0 && globalBatch <= count, "EpochSampler: batch \(globalBatch) for \(count) examples")
        self.count = count
        self.globalBatch = globalBatch
        self.seed = seed
    }

    /// Global batches per epoch.
    public var batchesPerEpoch: Int { count / globalBatch }

    /// The epoch's order (only the first `batchesPerEpoch · globalBatch` entries are used).
    public func order(epoch: Int) -> [Int] {
        var generator = Xoshiro256(seed: seed ^ (0x9e37_79b9_7f4a_7c15 &* UInt64(epoch + 1)))
        return generator.permutation(count)
    }

    /// Indices of rank `rank`'s slice of global batch `batch` in `order`.
    public func slice(of order: [Int], batch: Int, rank: Int, worldSize: Int) -> ArraySlice<Int> {
        precondition(globalBatch % worldSize == 0, "EpochSampler: batch \(globalBatch) not divisible by \(worldSize)")
        let local = globalBatch / worldSize
        let start = batch * globalBatch + rank * local
        return order[start..<(start + local)]
    }
}
