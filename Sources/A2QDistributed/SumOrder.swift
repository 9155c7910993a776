/// How a sum over ranks associates its R terms.
public enum SumOrder: String, CaseIterable, Sendable, Codable {
    /// Element by element in rank order, ((x₀ + x₁) + x₂) + …, computed by a2q after an
    /// all-to-all exchange (MPI only moves bytes): the same bits whether the buffer is summed
    /// whole or in buckets, over shared memory or TCP, whatever algorithm the MPI library picks.
    case fixed
    /// `MPI_Allreduce`'s own order: its algorithm choice (by message size, rank count, transport)
    /// decides the association, so bucket sizes and transports can change the last bits.
    case library
}
