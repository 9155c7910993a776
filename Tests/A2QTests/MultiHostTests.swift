import A2QTrain
import Foundation
import Testing

/// Test hosts as Linux network namespaces on a bridge (Launch/netns-hosts.sh): ranks in
/// different namespaces talk over TCP, as across a real network.
enum TestHosts {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Launch/netns-hosts.sh").path
    }

    /// Runs `mpirun ARGS` over `hosts` test hosts (one rank each), with an optional fault.
    /// `after`: the fault's delay counts from the moment this file exists.
    /// `environment`: more variables for the harness (A2Q_NETNS_DELAY, A2Q_NETNS_RATE).
    static func run(hosts: Int, fault: (kind: String, host: Int, seconds: Int)? = nil, after: String? = nil, _ arguments: [String],
                    environment: [String: String] = [:], timeout: Double = 180) throws -> MPIRun.Result {
        let faultArguments = fault.map { ["--fault", $0.kind, "\($0.host)", "\($0.seconds)"] } ?? []
        var env: [String: String?] = ["A2Q_ABORT_GRACE": "8", "A2Q_FAULT_AFTER": after]
        for (key, value) in environment { env[key] = value }
        return try MPIRun.runProcess("/bin/bash", [script, "run", "\(hosts)"] + faultArguments
                                     + ["--", "-np", "\(hosts)", "-x", "OPENBLAS_NUM_THREADS=1", MPIRun.binary] + arguments,
                                     timeout: timeout, environment: env)
    }

    /// Delay-line processes of the harness still running (it must stop its own).
    static func delayLines() throws -> Int {
        try MPIRun.runProcess("/usr/bin/pgrep", ["-c", "-f", "a2q-netns/delay-line"], timeout: 10).output
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").first.flatMap { Int($0) } ?? 0
    }

    /// Seconds from the injected fault to the end of mpirun, from the harness's time stamps.
    static func secondsFromFaultToEnd(_ output: String) -> Double? {
        func stamp(_ prefix: String) -> Double? {
            output.components(separatedBy: "\n").first { $0.hasPrefix(prefix) }
                .flatMap { line in line.components(separatedBy: " at ").last?.split(separator: " ").first.flatMap { Double(String($0)) } }
        }
        guard let fault = stamp("netns: fault: "), let end = stamp("netns: mpirun ended at") else { return nil }
        return end - fault
    }

    /// The processes the harness found still running on the test hosts after mpirun ended.
    static func leftovers(_ output: String) -> Int? {
        output.components(separatedBy: "\n").last { $0.hasPrefix("netns: leftover processes: ") }
            .flatMap { Int($0.dropFirst("netns: leftover processes: ".count)) }
    }

    /// Runs `Launch/train.sh -np HOSTS --hostfile <the test hosts> ARGS` (train.sh starts mpirun).
    static func trainScript(hosts: Int, unreachable: Int? = nil, _ arguments: [String], environment: [String: String] = [:],
                            timeout: Double = 120) throws -> MPIRun.Result {
        let trainScript = URL(fileURLWithPath: script).deletingLastPathComponent().appendingPathComponent("train.sh").path
        let quoted = ([trainScript, "-np", "\(hosts)", "--hostfile", "$A2Q_TEST_HOSTFILE"] + arguments)
            .map { $0 == "$A2Q_TEST_HOSTFILE" ? "\"$A2Q_TEST_HOSTFILE\"" : "'\($0)'" }.joined(separator: " ")
        let options = unreachable.map { ["--unreachable", "\($0)"] } ?? []
        var env: [String: String?] = ["A2Q_BINARY": MPIRun.binary]
        for (key, value) in environment { env[key] = value }
        return try MPIRun.runProcess("/bin/bash", [script, "run", "\(hosts)"] + options + ["--shell", "--", "bash", "-c", quoted],
                                     timeout: timeout, environment: env)
    }

    /// Namespaces of earlier runs still present (the harness must remove its own).
    static func namespaces() throws -> [String] {
        try MPIRun.runProcess("/usr/sbin/ip", ["netns", "list"], timeout: 10).output
            .split(separator: "\n").map { String($0.split(separator: " ")[0]) }.filter { $0.hasPrefix("a2q") }
    }
}

@Suite("Several hosts over TCP (network namespaces)", .serialized)
struct MultiHostTests {
    @Test("2 and 3 hosts over TCP (overlapped all-reduce, on by default across hosts) end bitwise identical to the same rank count over shared memory (fused, the default on one host); no process or namespace is left",
          arguments: [2, 3])
    func overTCP(hosts: Int) throws {
        let network = temporaryFolder("hosts-tcp"), local = temporaryFolder("hosts-shm")
        let tcp = try TestHosts.run(hosts: hosts, MPIRun.trainArguments(out: network, extra: ["--test-dump-parameters", network + "/dump"]))
        #expect(tcp.status == 0, "\(tcp.output)")
        #expect(TestHosts.leftovers(tcp.output) == 0, "\(tcp.output)")
        #expect(tcp.output.contains("overlapped all-reduce: ") && tcp.output.contains("progressed by a progress thread"), "\(tcp.output)")
        let shm = try MPIRun.run(ranks: hosts, MPIRun.trainArguments(out: local, extra: ["--test-dump-parameters", local + "/dump"]))
        #expect(shm.status == 0, "\(shm.output)")
        #expect(!shm.output.contains("overlapped all-reduce"), "\(shm.output)")
        let reference = try MPIRun.parameters(local + "/dump", rank: 0)
        for rank in 0..<hosts {
            #expect(try MPIRun.parameters(network + "/dump", rank: rank) == reference, "host \(rank + 1) differs from shared memory")
        }
        #expect(try TestHosts.namespaces().isEmpty)
    }

    @Test("an emulated link delay (A2Q_NETNS_DELAY=2ms on every host's outgoing frames, the harness's delay line) adds 2 ms to a small all-reduce between 2 hosts; the delay lines end with the run")
    func emulatedDelay() throws {
        func median(_ environment: [String: String]) throws -> Double {
            let result = try TestHosts.run(hosts: 2, ["bench", "allreduce", "--bytes", "4096", "--repeats", "15", "--json"],
                                           environment: environment, timeout: 120)
            #expect(result.status == 0, "\(result.output)")
            // The JSON line; Open MPI's own messages also start with "[" ("[host:pid] …").
            let rows = result.output.split(separator: "\n").filter { $0.hasPrefix("[") }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [[String: Any]] }.first
            return try #require(rows?.first?["median_seconds"] as? Double, "no JSON result in: \(result.output)")
        }
        // Two ranks exchange once (recursive doubling), each message delayed 2 ms on its way out;
        // the timed call also absorbs up to one delay of skew from the barrier before it.
        // Load on the machine only adds time, to either measurement: up to three pairs, and the
        // minimum median of each condition.
        var bares: [Double] = [], delays: [Double] = []
        for attempt in 1...3 {
            bares.append(try median([:]))
            delays.append(try median(["A2Q_NETNS_DELAY": "2ms"]))
            let added = (delays.min() ?? 0) - (bares.min() ?? 0)
            if added > 1.5e-3 && added < 6e-3 { break }
            print("timing: pair \(attempt): median \(delays.last! * 1e3) ms with the delay, \(bares.last! * 1e3) ms without; measuring again")
        }
        let bare = bares.min() ?? 0, delayed = delays.min() ?? 0
        #expect(delayed - bare > 1.5e-3 && delayed - bare < 6e-3,
                "median \(delayed * 1e3) ms with the delay, \(bare * 1e3) ms without (fastest of \(bares.count) each)")
        #expect(try TestHosts.delayLines() == 0)
        #expect(try TestHosts.namespaces().isEmpty)
    }

    static let faultRun = ["train", "--model", "cnn", "--data", "synthetic", "--train-subset", "6000", "--batch-size", "66",
                           "--float-epochs", "2", "--epochs", "1", "--calibration-batches", "2", "--log-every", "20",
                           "--checkpoint-every", "20", "--watchdog-seconds", "5"]

    /// Stated margin: mpirun's keep-alive notices a lost host in about 5 s; a frozen host is
    /// noticed by the watchdog (5 s here), named by a 2 s roll call, and the guard then gives
    /// mpirun 8 s (`A2Q_ABORT_GRACE`) before ending it.
    static let margin = 15.0

    @Test("a link going down, a host's ranks killed, a host frozen: the job ends within the watchdog plus 15 s, names what was lost, leaves no process, and the newest checkpoint is valid; the run resumes on one host",
          arguments: ["link-down", "kill", "freeze"])
    func faults(kind: String) throws {
        // The fault strikes 1 s after the step-40 checkpoint exists, in the middle of training.
        // Three hosts for the freeze, so that the roll call must tell the lost rank from a live one.
        let hosts = kind == "freeze" ? 3 : 2
        // The limit holds for the fastest of up to three runs (a loaded machine only delays the end);
        // every run must otherwise behave.
        let (runs, seconds) = try MPIRun.fastest(under: 5 + Self.margin) { () -> ((MPIRun.Result, String), Double) in
            let folder = temporaryFolder("hosts-\(kind)")
            let result = try TestHosts.run(hosts: hosts, fault: (kind, 2, 1), after: folder + "/" + CheckpointFolder.name(globalStep: 40),
                                           Self.faultRun + ["--out", folder], timeout: 120)
            // No time stamps is a failure of its own (below), not a reason to measure again.
            return ((result, folder), TestHosts.secondsFromFaultToEnd(result.output) ?? 0)
        }
        for (result, folder) in runs {
            #expect(result.status != 0, "\(result.output)")
            #expect(TestHosts.secondsFromFaultToEnd(result.output) != nil, "no fault and end time stamps: \(result.output)")
            #expect(result.output.contains("netns: fault: \(kind) on host 2"), "\(result.output)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/final.h5"), "the run finished before the fault")
            switch kind {
            case "freeze":
                // The stopped host still answers TCP, so only the watchdog sees it; its roll call names the lost rank and host.
                #expect(result.output.contains("a2q: rank 0 of 3") && result.output.contains("watchdog")
                        && result.output.contains("rank 1 (host testhost2) did not answer a roll call")
                        && !result.output.contains("rank 2 (host"), "\(result.output)")
            case "kill":
                // mpirun names the rank that died and its host.
                #expect(result.output.contains("process rank 1") && result.output.contains(".12") && result.output.contains("signal 9"),
                        "\(result.output)")
            default:
                // mpirun names the host whose daemon it lost.
                #expect(result.output.contains("lost communication with a remote daemon") && result.output.contains(".12"), "\(result.output)")
            }
            #expect(TestHosts.leftovers(result.output) == 0, "\(result.output)")
            let newest = try #require(CheckpointFolder.periodic(in: folder).last, "no checkpoint before the fault")
            #expect(throws: Never.self) { _ = try CheckpointFile.validate(newest) }
        }
        #expect(seconds < 5 + Self.margin, "mpirun ended \(seconds) s after the fault (fastest of \(runs.count)): \(runs.last.map { $0.0.output.suffix(2000) } ?? "")")
        print("fault \(kind): the job ended \(String(format: "%.1f", seconds)) s after it (fastest of \(runs.count))")
        #expect(try TestHosts.namespaces().isEmpty)

        if kind == "link-down", let (_, folder) = runs.last, let newest = CheckpointFolder.periodic(in: folder).last {
            // Elastic: the host that remains resumes the run alone.
            let resumed = try TestHosts.run(hosts: 1, Self.faultRun + ["--out", folder, "--resume", "auto"], timeout: 300)
            #expect(resumed.status == 0 && resumed.output.contains("resuming from \(newest)"), "\(resumed.output)")
            #expect(FileManager.default.fileExists(atPath: folder + "/final.h5"))
        }
    }

    @Test("bad hosts: an unreachable host, a host without the binary or the data, ranks whose configurations disagree: a message within seconds, non-zero exit, nothing left behind")
    func badHosts() throws {
        let folder = temporaryFolder("hosts-bad")
        let quick = ["--model", "mlp", "--data", "synthetic", "--train-subset", "1536", "--batch-size", "48", "--float-epochs", "1",
                     "--epochs", "1", "--max-steps", "20", "--calibration-batches", "2", "--out", folder + "/run"]
        let working = try TestHosts.trainScript(hosts: 2, quick)
        #expect(working.status == 0, "Launch/train.sh --hostfile over the test hosts: \(working.output)")

        // Time limits hold for the fastest of up to three runs (load only slows a run down).
        let (unreachableRuns, unreachableSeconds) = try MPIRun.fastest(under: 30) { () -> (MPIRun.Result, Double) in
            let result = try TestHosts.trainScript(hosts: 2, unreachable: 2, quick)
            return (result, result.seconds)
        }
        for unreachable in unreachableRuns {
            #expect(unreachable.status == 1 && unreachable.output.contains("is unreachable") && unreachable.output.contains(".12"),
                    "\(unreachable.output)")
        }
        #expect(unreachableSeconds < 30, "\(unreachableSeconds) s")

        let noBinary = try TestHosts.trainScript(hosts: 2, quick, environment: ["A2Q_BINARY": folder + "/missing/a2q"])
        #expect(noBinary.status == 1 && noBinary.output.contains("no a2q binary at \(folder)/missing/a2q"), "\(noBinary.output)")

        let noData = try TestHosts.trainScript(hosts: 2, quick.map { $0 == "synthetic" ? folder + "/no-data" : $0 })
        #expect(noData.status == 1 && noData.output.contains("no data at \(folder)/no-data"), "\(noData.output)")

        let (disagreeRuns, disagreeSeconds) = try MPIRun.fastest(under: 30) { () -> (MPIRun.Result, Double) in
            let result = try TestHosts.run(hosts: 2, MPIRun.trainArguments(out: temporaryFolder("hosts-disagree"), extra: ["--test-override-seed-on-rank", "1"]),
                                           timeout: 60)
            return (result, result.seconds)
        }
        for disagree in disagreeRuns {
            #expect(disagree.status != 0 && disagree.output.contains("disagree on the configuration hash"), "\(disagree.output)")
            #expect(TestHosts.leftovers(disagree.output) == 0, "\(disagree.output)")
        }
        #expect(disagreeSeconds < 30, "\(disagreeSeconds) s")
        #expect(try TestHosts.namespaces().isEmpty)
    }
}
