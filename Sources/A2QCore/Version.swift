/// The a2q release, also written into checkpoints.
public let a2qVersion = "0.1.0"
