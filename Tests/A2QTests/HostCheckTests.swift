import Foundation
import Testing

/// README, "Several hosts": `Launch/train.sh --hostfile` "first checks every host in parallel
/// (reachable over ssh, the binary at the same absolute path, the data folder) and stops within
/// seconds with one line per bad host ("host H is unreachable: …", "host H: no a2q binary at PATH",
/// "host H: no data at DIR")".
///
/// No network namespaces: `A2Q_RSH_AGENT` (how train.sh reaches a host) is a stand-in for ssh that
/// takes 2 s per connection and plays each host by its name: `down-*` refuse the connection,
/// `nobinary-*` and `nodata-*` run the probe on a file system where the binary or the data folder
/// is missing, `good-*` run it as it is.
@Suite("Launch/train.sh --hostfile with several bad hosts at once", .serialized)
struct HostCheckTests {
    static let agent = #"""
        #!/bin/bash
        host=$1; shift
        sleep 2
        case "$host" in
          down-*) echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255 ;;
          nobinary-*) missing=-x ;;
          nodata-*) missing=-r ;;
          *) missing=none ;;
        esac
        exec bash -c "test() { if [ \"\$1\" = '$missing' ]; then return 1; fi; builtin test \"\$@\"; }; $*"
        """#

    @Test("a hostfile with a good host and four bad ones (two unreachable, one without the binary, one without the data): exit 1 within seconds (the checks run in parallel), one line per bad host naming it and its problem, none for the good host, mpirun never started")
    func severalBadHosts() throws {
        let folder = temporaryFolder("host-check")
        try Claims.write(Self.agent, to: folder + "/agent.sh")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder + "/agent.sh")
        let hosts = ["good-1", "down-1", "nobinary-1", "nodata-1", "down-2"]
        try Claims.write("# test hosts\n" + hosts.map { "\($0) slots=1\n" }.joined(), to: folder + "/hostfile")
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Launch/train.sh").path
        let result = try MPIRun.runProcess("/bin/bash", [script, "-np", "5", "--hostfile", folder + "/hostfile", "--model", "mlp",
                                                         "--data", folder + "/data", "--out", folder + "/run"],
                                           timeout: 60, environment: ["A2Q_BINARY": MPIRun.binary, "A2Q_RSH_AGENT": folder + "/agent.sh"])
        #expect(result.status == 1, "exit \(result.status): \(result.output)")
        // Five checks of 2 s each: about 2 s in parallel, 10 s one after another.
        #expect(result.seconds < 7, "\(result.seconds) s: \(result.output)")
        let expected = [
            "down-1": "host down-1 is unreachable: ssh: connect to host down-1 port 22: Connection refused",
            "down-2": "host down-2 is unreachable: ssh: connect to host down-2 port 22: Connection refused",
            "nobinary-1": "host nobinary-1: no a2q binary at \(MPIRun.binary)",
            "nodata-1": "host nodata-1: no data at \(folder)/data",
        ]
        for (host, message) in expected.sorted(by: { $0.key < $1.key }) {
            let lines = Claims.lines(result.output, containing: host)
            #expect(lines.count == 1 && lines[0].contains(message), "\(host): \(lines)\n\(result.output)")
        }
        #expect(Claims.lines(result.output, containing: "good-1").isEmpty, "\(result.output)")
        #expect(result.output.contains("fix the hosts above or remove them from \(folder)/hostfile"), "\(result.output)")
        #expect(!result.output.contains("a2q train:") && !FileManager.default.fileExists(atPath: folder + "/run"), "\(result.output)")
    }
}
