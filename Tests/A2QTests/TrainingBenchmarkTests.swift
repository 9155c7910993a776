import A2QTrain
import Foundation
import Testing

/// `a2q bench train` times the steps it reports: its per-phase times are per step of the run it
/// measured (restoration epochs are short; the benchmark once trained one 32-step epoch and
/// divided by the steps asked for).
@Suite("Training benchmark")
struct TrainingBenchmarkTests {
    @Test("bench train on espcn runs every asked step; its phases add up to most of a step's wall time, never more")
    func restorationSteps() throws {
        let steps = 48, batch = 16  // one epoch at the training default is 32 steps of 16
        let run = try runA2Q(["bench", "train", "--model", "espcn", "--quantizer", "float", "--steps", "\(steps)",
                              "--batch", "\(batch)", "--json"], timeout: 600, environment: ["OPENBLAS_NUM_THREADS": "1"])
        #expect(run.status == 0, "\(run.output)")
        let start = try #require(run.output.firstIndex(of: "["))
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(run.output[start...].utf8)) as? [[String: Any]])
        let row = try #require(rows.first)
        #expect(row["steps"] as? Int == steps, "\(row)")
        let phases = try #require(row["seconds_per_step"] as? [String: Double]).values.reduce(0, +)
        let wall = Double(batch) / (try #require(row["images_per_second"] as? Double))
        // The phases leave out the loss, the metric and the bookkeeping, so they cover less than
        // the wall time per step, but most of it (with the old division: about a sixth).
        #expect(phases / wall > 0.5 && phases / wall < 1.05, "phases \(phases) s of a \(wall) s step")
        #expect(row["output_pixels_per_image"] as? Int == 64 * 64, "\(row)")
    }
}
