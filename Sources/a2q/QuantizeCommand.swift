import A2QCore
import A2QQuant
import A2QTrain
import ArgumentParser
import Foundation

extension WeightQuantizerKind: ExpressibleByArgument {}
extension WeightInitMethod: ExpressibleByArgument {}

/// `a2q quantize`: check a pre-trained layer against an accumulator budget.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize one pre-trained layer (HDF5 dataset 'weight') against a P-bit accumulator.",
        discussion: """
            Reads a float dataset 'weight' of shape [out, in] or [out, in, kh, kw], initialises the \
            quantizer from it exactly as a layer converted from a float model, and writes weight_int, \
            scale, l1_norm, acc_min, acc_max and p_min with the settings as attributes.
            """)

    @Option(name: .customLong("in"), help: "Input HDF5 file with a float dataset 'weight'.")
    var input: String

    @Option(name: .customLong("out"), help: "Output HDF5 file (not overwritten unless --overwrite).")
    var output: String

    @Option(help: "Weight quantizer: qat, a2q or a2q+.")
    var quantizer: WeightQuantizerKind

    @Option(help: "Weight bits M (2...16).")
    var weightBits = 8

    @Option(help: "Input bits N (2...16).")
    var inputBits = 8

    @Flag(help: "Inputs are signed (default: unsigned, as after a ReLU).")
    var inputSigned = false

    @Option(help: "Accumulator bits P (2...32).")
    var accumulatorBits = 16

    @Flag(help: "Initialise with the Euclidean projection (EP-init) instead of the naive init.")
    var epInit = false

    @Flag(help: "Replace an existing output file.")
    var overwrite = false

    @Flag(help: "Also print a one-line JSON summary.")
    var json = false

    func run() throws {
        let summary = try QuantizeTool.run(QuantizeTool.Options(
            input: input, output: output, kind: quantizer, weightBits: weightBits, inputBits: inputBits,
            inputSigned: inputSigned, accumulatorBits: accumulatorBits, init_: epInit ? .ep : .naive,
            overwrite: overwrite))
        if json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            printLine(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            printLine("""
                \(summary.quantizer): \(summary.channels) channels × K=\(summary.fanIn), max ||q||₁ = \(summary.maxL1Norm)\
                \(summary.bound.map { String(format: " (bound T = %.3f)", $0) } ?? ""), sparsity \(String(format: "%.1f%%", 100 * summary.sparsity)), \
                largest p_min \(summary.largestPMin) → \(summary.allChannelsFit ? "every channel fits" : "OVERFLOW POSSIBLE in") \(summary.accumulatorBits)-bit accumulators
                wrote \(summary.output)
                """)
        }
    }
}
