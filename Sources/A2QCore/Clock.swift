#if canImport(Glibc)
import Glibc
#endif

/// Monotonic wall-clock seconds (for throughput figures and ETAs).
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Runs `body` `warmup` times untimed, then `repeats` times; returns the sorted durations.
/// `setup`, if given, runs untimed before every call of `body` (to restore its inputs).
public func measure(warmup: Int = 2, repeats: Int, setup: () -> Void = {}, _ body: () -> Void) -> [Double] {
    for _ in 0..<warmup { setup(); body() }
    var times: [Double] = []
    times.reserveCapacity(repeats)
    for _ in 0..<repeats {
        setup()
        let start = monotonicSeconds()
        body()
        times.append(monotonicSeconds() - start)
    }
    return times.sorted()
}
