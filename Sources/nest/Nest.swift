import ArgumentParser
import Foundation
import NestIO
import NestModels

@main
struct Nest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nest",
        abstract: "Nested Attention personalization for Stable Diffusion models, on CPU.",
        discussion: """
            `nest generate` runs text-to-image with SD 1.x, 2.x and SDXL diffusers folders or \
            single-file checkpoints, giving the images diffusers gives for the same seed. `nest inspect` shows what a \
            model folder, weights file or image holds. `nest demo` trains a small network on \
            the engine and writes a PNG.
            """,
        subcommands: [Generate.self, Serve.self, Train.self, Adapter.self, World.self, Eval.self, Inspect.self, Demo.self])

    static func main() {
        EngineSetup.preferFastKernels()
        checkCommandNames(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // Help and clean exits print as the parser prints them; errors are one line.
            if exitCode(for: error) == .success { exit(withError: error) }
            let lines = message(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            FileHandle.standardError.write(("nest: error: " + lines.filter { !$0.isEmpty }.joined(separator: " — ") + "\n").data(using: .utf8)!)
            Foundation.exit(exitCode(for: error).rawValue)
        }
    }

    /// A mistyped command (`nest generat -p x`) is named as such, with the nearest
    /// command; the parser alone would complain about the options that follow it.
    static func checkCommandNames(_ arguments: [String]) {
        var command: ParsableCommand.Type = Nest.self
        var path = "nest"
        for word in arguments {
            let children = command.configuration.subcommands
            guard !children.isEmpty, !word.hasPrefix("-") else { return }
            guard let child = children.first(where: { $0._commandName == word }) else {
                if word == "help" { return }
                let names = children.map { $0._commandName }
                fail(NameSuggestion.unknown("command", "\(path) \(word)", among: names.map { "\(path) \($0)" })
                     + "; the commands are " + names.joined(separator: ", "))
            }
            command = child
            path += " " + word
        }
    }
}

/// Options every command shares.
struct EngineOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Worker threads for the engine's kernels (default: NEST_THREADS or the number of cores).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard (1...1024).contains(threads) else { throw ValidationError("--threads must be between 1 and 1024, got \(threads)") }
            EngineSetup.apply(threads: threads)
        }
    }
}

/// One line on stderr, then exit with failure: bad input never produces a stack trace.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(("nest: error: " + message + "\n").data(using: .utf8)!)
    Foundation.exit(1)
}
