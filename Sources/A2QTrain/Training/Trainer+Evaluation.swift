import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// Test evaluation (each rank a slice, reduced) and the cross-rank agreement checks.
extension Trainer {
    // MARK: Evaluation and agreement

    /// The task's test metric and mean loss, each rank evaluating a contiguous slice, reduced.
    public func evaluate(_ model: Model) throws -> (metric: Double, loss: Double) {
        let count = task.testCount
        let per = (count + communicator.worldSize - 1) / communicator.worldSize
        let start = min(communicator.rank * per, count), end = min(start + per, count)
        var stats = [Double](repeating: 0, count: 3)
        // 100 images per forward: every layer keeps scratch for the largest batch it has seen (a
        // resnet20 conv at 500 images holds ~0.5 GB), so evaluation stays near the training sizes;
        // whole test images (restoration) one at a time.
        let evalBatch = task.kind == .classification ? 100 : 1
        let x = Tensor(shape: [0])
        var first = start
        while first < end {
            let last = min(first + evalBatch, end)
            task.fillTest(first..<last, input: x)
            let output = model.network.forward(x, training: false)
            let value = task.loss(output)
            stats[0] += Double(value) * Double(last - first)
            stats[1] += task.metricSum(output)
            stats[2] += Double(last - first)
            first = last
        }
        try stats.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        return (stats[1] / max(stats[2], 1), stats[0] / max(stats[2], 1))
    }

    /// Every rank must run the same configuration with the same parameter count.
    func checkAgreement() throws {
        let mine: [Int64] = [Int64(bitPattern: config.hash), Int64(model.parameters.count), Int64(task.trainCount)]
        var low = mine, high = mine
        try low.withUnsafeMutableBufferPointer { try communicator.allReduceMin($0) }
        try high.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
        let names = ["configuration hash", "parameter count", "training-set size"]
        for i in 0..<mine.count where low[i] != high[i] {
            // Rank 0 reports (and aborts the job); the others wait for that.
            guard communicator.isRoot else { try communicator.barrier(); break }
            throw A2QError("ranks disagree on the \(names[i]) (rank 0 has \(mine[i]), the ranks span \(low[i])...\(high[i]))",
                           remedy: "start every rank with the same arguments, config file and data")
        }
    }

    /// Compares a checksum of the parameters across ranks; a mismatch is fatal.
    func checkConsistency(_ model: Model, step: Int) throws {
        guard communicator.worldSize > 1 else { return }
        let checksum = Int64(bitPattern: model.parameters.checksum())
        var low = [checksum], high = [checksum]
        try low.withUnsafeMutableBufferPointer { try communicator.allReduceMin($0) }
        try high.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
        if low[0] != high[0] {
            throw A2QError("replicas diverged: parameter checksums differ across ranks at step \(step)",
                           remedy: "this is a bug or a hardware fault; rerun from the last checkpoint")
        }
    }
}
