import A2QCore
import A2QData
import A2QDistributed
import A2QNN
import A2QQuant
import Foundation

/// Distributed checkpoints of a run: choosing and validating the file to resume from (rank 0),
/// restoring every rank from it, and saving periodic checkpoints that change nothing in the run.
extension Trainer {
    // MARK: Checkpoints

    /// Thrown (and caught by the command) when `--stop-after-steps` is reached.
    public struct StopRequested: Error, CustomStringConvertible {
        public let step: Int
        public var description: String { "stopped after global step \(step) as asked (--stop-after-steps); continue with --resume auto" }
    }

    /// Rank 0 finds and validates the checkpoint to resume from; every rank learns its header.
    func findResumeCheckpoint() throws -> CheckpointFile.Header? {
        guard let resume = config.resume else { return nil }
        var header: CheckpointFile.Header?
        var failure: String?
        if communicator.isRoot {
            do {
                if resume == "auto" {
                    header = CheckpointFolder.latestValid(in: output) { progress.line($0) }
                    if header == nil { progress.line("--resume auto: no valid checkpoint in \(output); starting from scratch") }
                } else {
                    header = try CheckpointFile.validate(resume)
                }
                if let saved = header?.config {
                    var problems = config.resumeMismatches(saved)
                    if let header, header.description != model.description {
                        problems.append("the model's layers differ (the model file changed since the checkpoint)")
                    }
                    if let header, header.inputShape != model.inputShape {
                        problems.append("input shape: checkpoint \(describe(header.inputShape)), now \(describe(model.inputShape))")
                    }
                    if !problems.isEmpty {
                        throw A2QError("\(header?.path ?? resume) was written by a different configuration: \(problems.joined(separator: "; "))",
                                       remedy: "resume with the same model, quantizer, bit widths, batch size, seed and data")
                    }
                    for (name, now, then) in [("lr", "\(config.learningRate)", "\(saved.learningRate)"), ("epochs", "\(config.epochs)", "\(saved.epochs)"),
                                              ("max-steps", "\(config.maxSteps.map(String.init) ?? "none")", "\(saved.maxSteps.map(String.init) ?? "none")")]
                    where now != then {
                        progress.line("warning: --\(name) changed from \(then) to \(now) since the checkpoint")
                    }
                }
            } catch {
                failure = "\(error)"
            }
        }
        // Share the outcome: a flag, then the header (as JSON) from rank 0.
        var payload = [UInt8]()
        if communicator.isRoot {
            let shared = SharedHeader(failure: failure, path: header?.path, state: header?.state, worldSize: header?.worldSize)
            payload = Array((try? JSONEncoder().encode(shared)) ?? Data())
        }
        var length = [Int64(payload.count)]
        try communicator.broadcast(&length)
        if !communicator.isRoot { payload = [UInt8](repeating: 0, count: Int(length[0])) }
        try communicator.broadcast(&payload)
        let shared = try JSONDecoder().decode(SharedHeader.self, from: Data(payload))
        if let failure = shared.failure { throw A2QError(failure) }
        guard let path = shared.path, let state = shared.state else { return nil }
        return CheckpointFile.Header(path: path, config: config, state: state, worldSize: shared.worldSize ?? 1, layerNames: [],
                                     description: model.description, inputShape: model.inputShape)
    }

    struct SharedHeader: Codable {
        var failure: String?
        var path: String?
        var state: TrainingState?
        var worldSize: Int?
    }

    /// Rank 0 loads the checkpoint; parameters, buffers and optimizer state go to every rank.
    func restore(_ header: CheckpointFile.Header, _ target: Model, _ optimizer: any Optimizer) throws {
        let path = header.path
        var failure = [Int64(0)]
        if communicator.isRoot {
            do { try CheckpointFile.restore(path, into: target, optimizer: optimizer) } catch {
                progress.line("Error: \(error)")
                failure[0] = 1
            }
        }
        try communicator.broadcast(&failure)
        if failure[0] != 0 { throw A2QError("could not load \(path) (see rank 0's message)") }
        try broadcastState(target)
        // Each rank's own BatchNorm statistics when the rank count is unchanged.
        var rows: [String: [Float]] = [:]
        if communicator.isRoot { rows = (try? CheckpointFile.rankBuffers(path, model: target, worldSize: header.worldSize)) ?? [:] }
        for (name, tensor) in target.network.buffers {
            var values = rows[name] ?? []
            var count = [Int64(values.count)]
            try communicator.broadcast(&count)
            if !communicator.isRoot { values = [Float](repeating: 0, count: Int(count[0])) }
            try communicator.broadcast(&values)
            if values.count == tensor.count * communicator.worldSize {
                for i in 0..<tensor.count { tensor.data[i] = values[communicator.rank * tensor.count + i] }
            }
        }
        var steps = [Int64(optimizer.stepCount)]
        try communicator.broadcast(&steps)
        optimizer.stepCount = Int(steps[0])
        for (_, buffer) in optimizer.stateBuffers {
            try communicator.broadcast(UnsafeMutableRawBufferPointer(buffer), root: 0)
        }
    }

    /// Saves a periodic checkpoint. Every rank's logging sums and buffers are gathered (exact:
    /// each rank fills its own row of a zero matrix before the sum), so saving changes nothing
    /// in the run and a resume with the same rank count continues it bit for bit.
    func saveCheckpoint(_ model: Model, optimizer: any Optimizer, state: TrainingState) throws {
        var saved = state
        saved.window = try gatherRows(state.window)
        saved.epochTotals = try gatherRows(state.epochTotals)
        var rankBuffers: [String: [Float]] = [:]
        for (name, tensor) in model.network.buffers {
            var rows = [Float](repeating: 0, count: tensor.count * communicator.worldSize)
            for i in 0..<tensor.count { rows[communicator.rank * tensor.count + i] = tensor.data[i] }
            try rows.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            rankBuffers[name] = rows
        }
        var failure = [Int64(0)]
        if communicator.isRoot {
            // /model keeps the rank average of the buffers; this rank's own values come back after.
            let own = model.network.buffers.map { ($0.tensor, $0.tensor.array) }
            for (name, tensor) in model.network.buffers {
                guard let rows = rankBuffers[name] else { continue }
                for i in 0..<tensor.count {
                    var sum: Float = 0
                    for r in 0..<communicator.worldSize { sum += rows[r * tensor.count + i] }
                    tensor.data[i] = sum / Float(communicator.worldSize)
                }
            }
            do {
                try CheckpointFile.save(path: (output as NSString).appendingPathComponent(CheckpointFolder.name(globalStep: state.globalStep)),
                                        model: model, optimizer: optimizer, state: saved, config: config,
                                        worldSize: communicator.worldSize, rankBuffers: rankBuffers)
                CheckpointFolder.prune(output, keep: config.keepCheckpoints)
            } catch {
                progress.line("Error: \(error)")
                failure[0] = 1
            }
            for (tensor, values) in own { for i in 0..<tensor.count { tensor.data[i] = values[i] } }
        }
        try communicator.broadcast(&failure)
        if failure[0] != 0 { throw A2QError("saving a checkpoint failed at step \(state.globalStep) (see rank 0's message)") }
    }

    /// `values` of every rank, rank-major (exact: the other rows are zeros).
    func gatherRows(_ values: [Double]) throws -> [Double] {
        var rows = [Double](repeating: 0, count: values.count * communicator.worldSize)
        for (i, v) in values.enumerated() { rows[communicator.rank * values.count + i] = v }
        try rows.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        return rows
    }

    /// This rank's share of rows saved by `savedRanks` ranks: its own row when the rank count is
    /// unchanged, else the column sums on rank 0 and zeros elsewhere.
    func ownRow(_ rows: [Double], width: Int, savedRanks: Int) -> [Double] {
        guard rows.count == width * savedRanks, savedRanks > 0 else { return [Double](repeating: 0, count: width) }
        if savedRanks == communicator.worldSize {
            return Array(rows[(communicator.rank * width)..<((communicator.rank + 1) * width)])
        }
        guard communicator.isRoot else { return [Double](repeating: 0, count: width) }
        return (0..<width).map { i in (0..<savedRanks).reduce(0) { $0 + rows[$1 * width + i] } }
    }
}
