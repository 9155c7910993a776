import A2QCore
import A2QData
import A2QInteger

/// PSNR of a restoration model on a task's test crops, through the fake-quantized float graph
/// or the integer engine (whose output integers are the pixels).
public enum RestorationEvaluation {
    /// The float (fake-quantized) model's mean PSNR over the test crops.
    public static func psnr(_ model: Model, _ task: RestorationTask) -> Double {
        let input = Tensor(shape: [0])
        var total = 0.0
        for example in 0..<task.testCount {
            task.fillTest(example..<(example + 1), input: input)
            total += task.metricSum(model.network.forward(input, training: false))
        }
        return total / Double(max(task.testCount, 1))
    }

    /// The integer engine's mean PSNR over the test crops: the model is run at the crops' size
    /// (`IntegerModel.resized`), its output integers divided by 255. Returns the engine too,
    /// for its overflow counts.
    public static func psnr(_ model: IntegerModel, _ task: RestorationTask, mode: OverflowMode, accumulatorBits: [String: Int],
                            kernels: IntegerKernelChoice = IntegerKernelChoice()) throws -> (psnr: Double, engine: IntegerEngine) {
        let side = task.test.inputSize
        let engine = try IntegerEngine(model: try model.resized(height: side, width: side), mode: mode, accumulatorBits: accumulatorBits,
                                       kernels: kernels)
        let input = Tensor(shape: [0])
        var pixels = [UInt8](repeating: 0, count: Image.channels * side * side)
        let output = Tensor(shape: [1] + task.test.targetShape)
        var total = 0.0
        for example in 0..<task.testCount {
            task.fillTest(example..<(example + 1), input: input)
            for i in 0..<pixels.count { pixels[i] = UInt8((input[i] * 255).rounded()) }
            let levels = pixels.withUnsafeBufferPointer { engine.logits(pixels: $0, count: 1) }
            precondition(levels.count == output.count, "RestorationEvaluation: \(levels.count) output values for \(output.count)")
            for i in 0..<levels.count { output.data[i] = levels[i] / 255 }
            total += task.metricSum(output)
        }
        return (total / Double(max(task.testCount, 1)), engine)
    }
}
