import A2QCore
import A2QDistributed
import A2QNN

/// The gradient all-reduce overlapped with the backward pass, in buckets (as PyTorch DDP's
/// buckets and Horovod's tensor fusion): the layers' parameters lie in the one gradient buffer
/// in layer order, and the backward pass finishes them from the end, so once layer `i`'s
/// backward has run, everything from its first parameter to the end of the buffer is final.
/// As soon as at least `bucketElements` final values are not yet being reduced, they are sent
/// off as one non-blocking sum; between layers the started sums are progressed; the rest is
/// sent after the backward pass, and every sum is awaited before the optimizer step.
///
/// Every rank starts the same buckets in the same order, so replicas stay bitwise identical, and
/// each element is a2q's rank-order sum of its R values (`ordered_sum.c`) whatever bucket it
/// travels in, so the result equals the fused all-reduce bit for bit (with
/// `--allreduce-order library`, MPI's algorithm for a bucket may associate the terms otherwise).
struct OverlappedAllReduce {
    /// Per leaf index (`Network.leaves`): the offset of its first parameter (nil for layers without any).
    private let layerStart: [Int?]
    private let count: Int
    private let bucketElements: Int
    private let gradients: UnsafeMutablePointer<Float>
    /// Everything at or after this offset has been started.
    private var startedFrom = 0
    private var handles: [Int] = []
    private var failure: (any Error)?
    /// Buckets started in the last step (for the log and the tests).
    private(set) var bucketsStarted = 0
    /// The bucket size asked for, MiB, and what advances the sums (for the log).
    private let bucketMB: Double
    private let progressedBy: String

    /// Nil when the parameters do not lie in layer order (then the fused all-reduce is used).
    init?(network: Network, bucketMB: Double, progressedBy: String) {
        let store = network.parameters
        var starts: [Int?] = []
        var previous = -1
        for layer in network.leaves {
            let offsets = store.views.filter { $0.name.hasPrefix(layer.name + ".") }.map(\.offset)
            guard let first = offsets.min() else { starts.append(nil); continue }
            guard first > previous else { return nil }
            previous = first
            starts.append(first)
        }
        layerStart = starts
        count = store.count
        bucketElements = max(Int(bucketMB * 1_048_576) / MemoryLayout<Float>.stride, 1)
        self.bucketMB = bucketMB
        self.progressedBy = progressedBy
        gradients = store.gradients
        handles.reserveCapacity(count / bucketElements + 2)
    }

    /// One line for the log, after the first step.
    var summary: String {
        "overlapped all-reduce: \(bucketsStarted) bucket(s) per step (each at least \(bucketMB) MiB but the last), "
            + "started during the backward pass, progressed \(progressedBy)"
    }

    /// Call before the backward pass.
    mutating func begin() {
        startedFrom = count
        handles.removeAll(keepingCapacity: true)
        failure = nil
        bucketsStarted = 0
    }

    /// Call after `leaves[index]`'s backward: starts a bucket if enough gradients are final,
    /// otherwise lets the started ones progress.
    mutating func layerFinished(_ index: Int, communicator: any Communicator) {
        guard failure == nil else { return }
        do {
            if let ready = layerStart[index], startedFrom - ready >= bucketElements {
                try start(from: ready, communicator: communicator)
            } else if !handles.isEmpty {
                try communicator.progress()
            }
        } catch {
            failure = error
        }
    }

    /// Starts what is left, waits for every bucket, and rethrows a failure of the backward's buckets.
    mutating func finish(communicator: any Communicator) throws {
        if let failure { throw failure }
        if startedFrom > 0 { try start(from: 0, communicator: communicator) }
        for handle in handles { try communicator.finish(handle) }
        handles.removeAll(keepingCapacity: true)
    }

    private mutating func start(from offset: Int, communicator: any Communicator) throws {
        let bucket = UnsafeMutableBufferPointer(start: gradients + offset, count: startedFrom - offset)
        handles.append(try communicator.startAllReduceSum(bucket))
        startedFrom = offset
        bucketsStarted += 1
    }
}

extension Trainer {
    /// The overlapped all-reduce this run uses, or nil for the fused one: `--allreduce-bucket-mb`
    /// (by default 1 MiB when the ranks span several hosts, fused on one host, where the
    /// progress thread's polling costs more than the overlap saves), and `--allreduce-progress`.
    func makeOverlappedAllReduce(_ network: Network) -> OverlappedAllReduce? {
        guard communicator.worldSize > 1 else { return nil }
        let bucketMB = config.bucketMB(hostCount: Set(communicator.hosts).count)
        guard bucketMB > 0 else { return nil }
        let wantThread = config.allreduceProgress == .thread
        var progressedBy = wantThread ? "by a progress thread" : "between layers"
        if !communicator.useProgressThread(wantThread) {  // then the sums progress between layers
            progressedBy = "between layers"
            progress.line("warning: no progress thread (the MPI library does not provide MPI_THREAD_SERIALIZED, or the thread could not start); the overlapped all-reduce progresses between layers")
        }
        guard let overlap = OverlappedAllReduce(network: network, bucketMB: bucketMB, progressedBy: progressedBy) else {
            progress.line("warning: the parameters are not in layer order; using the fused all-reduce")
            return nil
        }
        return overlap
    }
}
