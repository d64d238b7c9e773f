import ArgumentParser
import Foundation
import NestEngine
import NestIO

@main
struct Nest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nest",
        abstract: "Nested Attention personalization for Stable Diffusion models, on CPU.",
        discussion: """
            `nest generate` runs text-to-image with SD 1.x, 2.x and SDXL diffusers folders, \
            giving the images diffusers gives for the same seed. `nest inspect` shows what a \
            model folder, weights file or image holds. `nest demo` trains a small network on \
            the engine and writes a PNG.
            """,
        subcommands: [Generate.self, Train.self, World.self, Eval.self, Inspect.self, Demo.self])

    static func main() {
        BLAS.preferFastKernels()
        main(nil)
    }
}

/// Options every command shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Worker threads for the engine's kernels (default: NEST_THREADS or the number of cores).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
            Threads.count = threads
        }
    }
}

/// One line on stderr, then exit with failure: bad input never produces a stack trace.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(("nest: error: " + message + "\n").data(using: .utf8)!)
    Foundation.exit(1)
}
