import ArgumentParser
import Foundation
import NestIO
import NestModels
import NestTraining

/// A small end-to-end run of the engine (`PainterDemo`); the result is written as
/// a PNG (target | prediction) carrying its parameters in a `parameters` chunk.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a tiny network on the engine and write what it learned as a PNG.")

    @Option(name: .shortAndLong, help: "Output PNG.")
    var output: String = "nest-demo.png"

    @Option(help: "Training steps.")
    var steps: Int = 300

    @Option(help: "Image side in pixels (a multiple of 4).")
    var size: Int = 32

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Flag(help: "Replace the output file if it exists.")
    var overwrite = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard (1...100_000).contains(steps) else { throw ValidationError("--steps must be between 1 and 100000, got \(steps)") }
        guard size >= 8 && size <= 256 && size % 4 == 0 else {
            throw ValidationError("--size must be a multiple of 4 between 8 and 256, got \(size)")
        }
        guard output.lowercased().hasSuffix(".png") else { throw ValidationError("--output must end in .png, got \(output)") }
    }

    func run() throws {
        try engine.apply()
        if FileManager.default.fileExists(atPath: output) && !overwrite {
            fail("\(output) already exists; pass --overwrite to replace it")
        }
        let demo = PainterDemo(steps: steps, size: size, seed: seed)
        print("nest demo: \(formatCount(demo.parameterCount)) parameters, \(size)×\(size) image, \(steps) steps, \(EngineSetup.threads) thread(s)")
        let start = Date()
        let loss = demo.train { step, stepLoss in
            if step % max(1, steps / 10) == 0 || step == steps - 1 {
                print(String(format: "  step %4d  loss %.5f  %.1f steps/s", step + 1, stepLoss, Double(step + 1) / Date().timeIntervalSince(start)))
            }
        }
        let image = try demo.picture()
        let parameters = "nest demo; steps: \(steps); size: \(size); seed: \(seed); final loss: \(String(format: "%.5f", loss))"
        do {
            try ImageFile.writePNG(image, to: output, text: [("parameters", parameters)], overwrite: overwrite)
        } catch {
            fail(String(describing: error))
        }
        print("wrote \(output) (left: target, right: network output)")
    }
}
