/// A user-facing error: what was wrong, and what to do about it.
///
/// Library code throws these for bad input (files, configuration, data, MPI); the command
/// line prints `description` and exits non-zero. Programmer errors use `precondition`.
public struct A2QError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong.
    public var problem: String
    /// What the user can do about it (may be empty).
    public var remedy: String

    public init(_ problem: String, remedy: String = "") {
        self.problem = problem
        self.remedy = remedy
    }

    public var description: String { remedy.isEmpty ? problem : "\(problem)\n  → \(remedy)" }
}
