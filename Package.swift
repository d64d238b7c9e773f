// swift-tools-version:6.0
import PackageDescription

// Numeric code lives in the engine; every other layer (I/O, models, diffusion,
// personalization, training, the miniature world, the CLI) builds on it.
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

#if os(Linux)
let blasDependency: [Target.Dependency] = ["COpenBLAS"]
#else
let blasDependency: [Target.Dependency] = []
#endif

let package = Package(
    name: "NestedAttention",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "NestEngine", targets: ["NestEngine"]),
        .library(name: "NestIO", targets: ["NestIO"]),
        .library(name: "NestModels", targets: ["NestModels"]),
        .library(name: "NestDiffusion", targets: ["NestDiffusion"]),
        .library(name: "NestPersonalization", targets: ["NestPersonalization"]),
        .library(name: "NestTraining", targets: ["NestTraining"]),
        .library(name: "NestWorld", targets: ["NestWorld"]),
        .library(name: "NestEvaluation", targets: ["NestEvaluation"]),
        .library(name: "NestServer", targets: ["NestServer"]),
        .executable(name: "nest", targets: ["nest"]),
        .executable(name: "nest-bench", targets: ["nest-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libpng-dev, libjpeg62-turbo-dev).
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        // libpng and libjpeg report errors by longjmp, which Swift cannot catch:
        // a small C layer turns them into return codes and messages.
        .target(name: "CImageCodecs", dependencies: ["CPNG", "CJPEG"], path: "Sources/CImageCodecs"),

        // AVX-512 versions of the engine's transcendental hot loops, chosen at run time.
        .target(name: "CKernels", path: "Sources/CKernels"),

        // Engine: tensors, kernels, autograd, optimizers, modules, threads.
        .target(name: "NestEngine", dependencies: blasDependency + ["CKernels"], path: "Sources/NestEngine",
                swiftSettings: optimize),
        // I/O: safetensors and image files.
        .target(name: "NestIO", dependencies: ["NestEngine", "CImageCodecs"], path: "Sources/NestIO",
                swiftSettings: optimize),

        // Models: UNet, VAE, CLIP text and vision, built from diffusers/transformers configs.
        .target(name: "NestModels", dependencies: ["NestEngine", "NestIO"], path: "Sources/NestModels",
                swiftSettings: optimize),

        // Diffusion: tokenizer, prompt encoding, schedulers, pipelines.
        .target(name: "NestDiffusion", dependencies: ["NestEngine", "NestIO", "NestModels"],
                path: "Sources/NestDiffusion", swiftSettings: optimize),

        // Personalization: Nested Attention, IP-Adapter and single-token baselines, subject encoders.
        .target(name: "NestPersonalization", dependencies: ["NestEngine", "NestIO", "NestModels", "NestDiffusion"],
                path: "Sources/NestPersonalization", swiftSettings: optimize),

        // Training: data manifests, augmentation, checkpoints, trainers.
        .target(name: "NestTraining", dependencies: ["NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization"],
                path: "Sources/NestTraining", swiftSettings: optimize),

        // Miniature world: deterministic procedural scenes and captions to train on.
        // (It renders with no model: the tokenizer is its only use of the diffusion layer.)
        .target(name: "NestWorld", dependencies: ["NestIO", "NestDiffusion"], path: "Sources/NestWorld",
                swiftSettings: optimize),

        // Evaluation: generates held-out world subjects through the Generator and scores them.
        .target(name: "NestEvaluation", dependencies: ["NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization",
                                                       "NestTraining", "NestWorld"],
                path: "Sources/NestEvaluation", swiftSettings: optimize),

        // Server: the web-UI HTTP API and the demo page over one loaded model (`nest serve`).
        .target(name: "NestServer", dependencies: [
            "NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization",
            .product(name: "Hummingbird", package: "hummingbird"),
        ], path: "Sources/NestServer", resources: [.copy("Page")]),

        .executableTarget(name: "nest", dependencies: [
            "NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization", "NestTraining", "NestWorld",
            "NestEvaluation", "NestServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/nest",
        // The trained miniature world, shipped as the default model (see DefaultModel.swift).
        resources: [.copy("Resources/world")], swiftSettings: optimize),
        .executableTarget(name: "nest-bench", dependencies: ["NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization", "CKernels"],
                          path: "Sources/nest-bench", swiftSettings: optimize),

        // What several test targets share (the fuzz tests' seeded generator).
        .target(name: "NestTestSupport", path: "Tests/NestTestSupport"),

        .testTarget(name: "NestEngineTests", dependencies: ["NestEngine", "NestIO", "CKernels"],
                    path: "Tests/NestEngineTests", resources: [.copy("Fixtures")]),
        .testTarget(name: "NestIOTests", dependencies: ["NestTestSupport", "NestEngine", "NestIO"],
                    path: "Tests/NestIOTests"),
        .testTarget(name: "NestDiffusionTests", dependencies: ["NestEngine", "NestModels", "NestDiffusion"],
                    path: "Tests/NestDiffusionTests", resources: [.copy("Fixtures")]),
        .testTarget(name: "NestPersonalizationTests", dependencies: ["NestTestSupport", "NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization"],
                    path: "Tests/NestPersonalizationTests", resources: [.copy("Fixtures")]),
        .testTarget(name: "NestTrainingTests", dependencies: ["NestTestSupport", "NestEngine", "NestIO", "NestModels", "NestDiffusion", "NestPersonalization", "NestTraining"],
                    path: "Tests/NestTrainingTests", resources: [.copy("Fixtures")]),
        .testTarget(name: "NestCLITests", dependencies: ["nest", "NestTestSupport", "NestIO", "NestEngine", "NestModels", "NestPersonalization", "NestTraining"],
                    path: "Tests/NestCLITests"),
        .testTarget(name: "NestWorldTests", dependencies: ["NestWorld", "NestIO", "NestModels", "NestDiffusion"],
                    path: "Tests/NestWorldTests"),
        .testTarget(name: "NestServerTests", dependencies: ["NestServer", "NestTestSupport", "NestIO", "NestEngine", "NestModels", "NestDiffusion", "NestPersonalization"],
                    path: "Tests/NestServerTests"),
        .testTarget(name: "NestEvaluationTests", dependencies: ["NestEvaluation", "NestWorld", "NestPersonalization", "NestDiffusion", "NestIO"],
                    path: "Tests/NestEvaluationTests"),
        .testTarget(name: "NestModelsTests", dependencies: ["NestTestSupport", "NestEngine", "NestIO", "NestModels"],
                    path: "Tests/NestModelsTests", resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
