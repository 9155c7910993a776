// swift-tools-version:6.0
import PackageDescription

/// a2q: accumulator-aware quantized training (A2Q / A2Q+) in Swift.
/// System C libraries come from Debian's packages; run `Launch/setup.sh` first.
let debianBuildDeps = ["libopenmpi-dev", "libhdf5-dev", "libopenblas-dev", "libdnnl-dev", "zlib1g-dev", "libpng-dev",
                       "libjpeg62-turbo-dev", "pkg-config"]

let package = Package(
    name: "a2q",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "a2q", targets: ["a2q"]),
        .library(name: "A2QTrain", targets: ["A2QTrain"]),
        .library(name: "A2QInteger", targets: ["A2QInteger"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // System libraries (pkg-config names as Debian ships them).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // oneDNN: its sgemm is the training GEMM (faster than OpenBLAS's on AVX-512; no .pc file).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        // Thin C shims that expose only <stdint.h> types to Swift.
        .target(name: "MPIShim", dependencies: ["CMPI"], path: "Sources/MPIShim"),
        .target(name: "HDF5Shim", dependencies: ["CHDF5"], path: "Sources/HDF5Shim"),
        // PNG (libpng) and JPEG (libjpeg-turbo) decoding and PNG writing; their longjmp errors stay in C.
        .target(name: "ImageCodecs", dependencies: ["CPNG", "CJPEG"], path: "Sources/ImageCodecs"),
        // CPU features and the choice of OpenBLAS's kernel set (a constructor, before main).
        .target(name: "CPUSupport", dependencies: ["COpenBLAS"], path: "Sources/CPUSupport"),
        // The integer engine's kernels: int8 GEMMs (scalar, AVX2, AVX-512 VNNI, 16-bit lanes).
        .target(name: "IntegerKernels", dependencies: ["CPUSupport"], path: "Sources/IntegerKernels"),
        // Layer kernels of the training graph: pooling, im2col/col2im.
        .target(name: "NNKernels", path: "Sources/NNKernels"),
        // Convolutions through oneDNN's primitives (blocked layouts inside, NCHW/OIHW outside).
        .target(name: "ConvKernels", dependencies: ["CDNNL"], path: "Sources/ConvKernels"),
        // Vectorised quantizer kernels (C, so that reductions may be reassociated).
        .target(name: "QuantKernels", path: "Sources/QuantKernels"),
        // Swift modules, bottom to top.
        .target(name: "A2QCore", dependencies: ["COpenBLAS", "CDNNL", "CPUSupport"]),
        .target(name: "A2QQuant", dependencies: ["A2QCore", "QuantKernels", "COpenBLAS"]),
        .target(name: "A2QNN", dependencies: ["A2QCore", "A2QQuant", "QuantKernels", "NNKernels", "ConvKernels", "COpenBLAS"]),
        .target(name: "A2QData", dependencies: ["A2QCore", "CZlib", "ImageCodecs"]),
        .target(name: "A2QDistributed", dependencies: ["A2QCore", "MPIShim"]),
        .target(name: "A2QCheckpoint", dependencies: ["A2QCore", "HDF5Shim"]),
        // Deployment: the integer model, its engine, verify and the HDF5 export (no trainer).
        .target(name: "A2QInteger", dependencies: ["A2QCore", "A2QQuant", "A2QData", "A2QCheckpoint", "QuantKernels",
                                                   "IntegerKernels", "COpenBLAS", "CZlib"]),
        // ONNX's protobuf schema as Swift types, generated once by Launch/generate-onnx-proto.sh.
        .target(name: "ONNXProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // The trainer; its Import/ folder reads float ONNX models (PyTorch exports) through ONNXProto.
        .target(name: "A2QTrain", dependencies: ["A2QCore", "A2QQuant", "A2QNN", "A2QData", "A2QDistributed",
                                                 "A2QCheckpoint", "A2QInteger", "QuantKernels", "IntegerKernels", "NNKernels", "COpenBLAS",
                                                 "ONNXProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // QONNX and ONNX writers of the integer model.
        .target(name: "A2QExport", dependencies: ["A2QCore", "A2QQuant", "A2QInteger", "ONNXProto",
                                                  .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(name: "a2q", dependencies: [
            "A2QTrain", "A2QNN", "A2QInteger", "A2QExport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "A2QTests", dependencies: ["A2QCore", "A2QQuant", "A2QNN", "A2QData",
                                                     "A2QDistributed", "A2QCheckpoint", "A2QTrain", "A2QInteger", "A2QExport",
                                                     "IntegerKernels", "CPUSupport", "QuantKernels"]),
    ],
    swiftLanguageModes: [.v6]
)
