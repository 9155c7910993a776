import Foundation
import Testing

/// README, "Throughput": "The training GEMM is oneDNN's `dnnl_sgemm` (`A2Q_GEMM=openblas` switches
/// back)"; "`A2Q_CONV=im2col` switches back to a2q's im2col + sgemm (kept for comparison, and used
/// for a shape oneDNN cannot build, with a warning)".
@Suite("A2Q_GEMM, A2Q_CONV and the im2col fallback", .serialized)
struct EnvironmentSwitchTests {
    /// Float training with plain SGD: two GEMM or convolution implementations give the same
    /// numbers up to rounding, so "close but not bitwise equal" shows which one ran.
    static func train(_ model: [String], out: String, environment: [String: String?] = [:]) throws -> MPIRun.Result {
        try runA2Q(["train"] + model + ["--quantizer", "float", "--optimizer", "sgd", "--lr", "0.05", "--data", "synthetic",
                                        "--train-subset", "256", "--batch-size", "32", "--epochs", "1", "--log-every", "100", "--out", out],
                   environment: environment)
    }

    /// Largest relative L2 difference over the tensors of two runs' final.h5, and whether any bit differs.
    static func compare(_ a: String, _ b: String) throws -> (largest: Double, differs: Bool) {
        let x = try modelTensors(a + "/final.h5"), y = try modelTensors(b + "/final.h5")
        #expect(!x.isEmpty && x.keys.sorted() == y.keys.sorted())
        let largest = x.keys.map { Claims.relativeDifference(x[$0] ?? [], y[$0] ?? []) }.max() ?? 0
        return (largest, try !Claims.differingTensors(a + "/final.h5", b + "/final.h5").differing.isEmpty)
    }

    @Test("A2Q_GEMM=openblas: `a2q env` names OpenBLAS's sgemm, and an mlp trains to different bits than with oneDNN's (within 1e-4), the same bits twice")
    func gemmSwitch() throws {
        let normal = try runA2Q(["env"]), switched = try runA2Q(["env"], environment: ["A2Q_GEMM": "openblas"])
        #expect(normal.output.contains("gemm: oneDNN") && !normal.output.contains("gemm: OpenBLAS"), "\(normal.output)")
        #expect(switched.output.contains("gemm: OpenBLAS cblas_sgemm"), "\(switched.output)")
        let mlp = ["--model", "mlp"]
        let onednn = temporaryFolder("gemm-onednn"), openblas = temporaryFolder("gemm-openblas"), again = temporaryFolder("gemm-openblas")
        #expect(try Self.train(mlp, out: onednn).status == 0)
        #expect(try Self.train(mlp, out: openblas, environment: ["A2Q_GEMM": "openblas"]).status == 0)
        #expect(try Self.train(mlp, out: again, environment: ["A2Q_GEMM": "openblas"]).status == 0)
        let (largest, differs) = try Self.compare(onednn, openblas)
        #expect(differs && largest < 1e-4, "oneDNN vs OpenBLAS: differ \(differs), largest relative difference \(largest)")
        #expect(try !Self.compare(openblas, again).differs, "two OpenBLAS runs differ")
    }

    /// Two convolutions (3×3 and 5×5), so that one can be refused and the other not.
    static let model = """
        {"format": "a2q-model", "version": 1, "name": "two-convs", "layers": [
         {"type": "conv", "name": "conv1", "out": 4, "kernel": 3}, {"type": "relu", "name": "relu1"}, {"type": "quant", "name": "act1"},
         {"type": "maxpool", "name": "pool1"},
         {"type": "conv", "name": "conv2", "out": 8, "kernel": 5}, {"type": "relu", "name": "relu2"}, {"type": "quant", "name": "act2"},
         {"type": "flatten", "name": "flatten"}, {"type": "linear", "name": "fc"}]}
        """

    /// An LD_PRELOAD library that makes oneDNN refuse to build convolutions whose kernel is
    /// `A2Q_TEST_REFUSE_KERNEL` wide (0: every convolution): a shape oneDNN cannot build.
    static let refuser = #"""
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <dnnl.h>
        #include <stdlib.h>
        dnnl_status_t dnnl_convolution_forward_desc_init(dnnl_convolution_desc_t *d, dnnl_prop_kind_t p, dnnl_alg_kind_t a,
                const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *b,
                const dnnl_memory_desc_t *dst, const dnnl_dims_t s, const dnnl_dims_t pl, const dnnl_dims_t pr) {
            const char *k = getenv("A2Q_TEST_REFUSE_KERNEL");
            if (k && w->ndims == 4 && (atoll(k) == 0 || w->dims[3] == atoll(k))) return dnnl_unimplemented;
            dnnl_status_t (*real)(dnnl_convolution_desc_t *, dnnl_prop_kind_t, dnnl_alg_kind_t, const dnnl_memory_desc_t *,
                                  const dnnl_memory_desc_t *, const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                                  const dnnl_dims_t, const dnnl_dims_t, const dnnl_dims_t)
                = dlsym(RTLD_NEXT, "dnnl_convolution_forward_desc_init");
            return real(d, p, a, src, w, b, dst, s, pl, pr);
        }
        """#

    @Test("A2Q_CONV=im2col: `a2q env` names im2col + sgemm, and training differs in bits from oneDNN's convolutions (within 1e-4); a convolution oneDNN refuses to build runs on im2col with a warning naming the layer (conv2 only when only 5×5 is refused), and with every convolution refused the run equals A2Q_CONV=im2col bit for bit")
    func convSwitchAndFallback() throws {
        let switched = try runA2Q(["env"], environment: ["A2Q_CONV": "im2col"]), normal = try runA2Q(["env"])
        #expect(switched.output.contains("convolutions: im2col + sgemm"), "\(switched.output)")
        #expect(normal.output.contains("convolutions: oneDNN"), "\(normal.output)")

        let folder = temporaryFolder("conv-switch")
        try Claims.write(Self.model, to: folder + "/two-convs.json")
        try Claims.write(Self.refuser, to: folder + "/refuse.c")
        let compiled = try MPIRun.runProcess("/usr/bin/cc", ["-shared", "-fPIC", "-O1", "-o", folder + "/refuse.so", folder + "/refuse.c", "-ldl"],
                                             timeout: 60)
        try #require(compiled.status == 0, "cc (gcc) and oneDNN's headers (libdnnl-dev, Launch/setup.sh) are needed: \(compiled.output)")
        let model = ["--model", folder + "/two-convs.json"]
        let onednn = folder + "/onednn", im2col = folder + "/im2col", fallback = folder + "/fallback", partial = folder + "/partial"
        let plain = try Self.train(model, out: onednn)
        #expect(plain.status == 0 && !plain.output.contains("warning"), "\(plain.output)")
        let forced = try Self.train(model, out: im2col, environment: ["A2Q_CONV": "im2col"])
        #expect(forced.status == 0 && !forced.output.contains("warning"), "\(forced.output)")
        let (largest, differs) = try Self.compare(onednn, im2col)
        #expect(differs && largest < 1e-4, "oneDNN vs im2col: differ \(differs), largest relative difference \(largest)")

        let refusedAll = try Self.train(model, out: fallback, environment: ["LD_PRELOAD": folder + "/refuse.so", "A2Q_TEST_REFUSE_KERNEL": "0"])
        #expect(refusedAll.status == 0, "\(refusedAll.output)")
        for layer in ["conv1", "conv2"] {
            let warnings = Claims.lines(refusedAll.output, containing: "warning: \(layer): oneDNN convolution")
            #expect(!warnings.isEmpty && warnings.allSatisfy { $0.hasSuffix("this layer runs on im2col + sgemm") }, "\(refusedAll.output)")
        }
        #expect(try !Self.compare(fallback, im2col).differs, "the fallback is not the im2col path")

        let refusedOne = try Self.train(model, out: partial, environment: ["LD_PRELOAD": folder + "/refuse.so", "A2Q_TEST_REFUSE_KERNEL": "5"])
        #expect(refusedOne.status == 0, "\(refusedOne.output)")
        let warnings = Claims.lines(refusedOne.output, containing: "warning:")
        #expect(!warnings.isEmpty && warnings.allSatisfy { $0.contains("warning: conv2: oneDNN convolution") && $0.contains("5x5") },
                "\(refusedOne.output)")
        print("im2col fallback: \(warnings.count) warning lines for one refused layer in a 1-epoch run")
    }
}
