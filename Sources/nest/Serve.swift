import ArgumentParser
import Foundation
import NestDiffusion
import NestPersonalization
import NestServer

/// The web-UI HTTP API and the demo page over one loaded model.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the web UI's HTTP API (/sdapi/v1/txt2img, …) and a web page at / from one loaded model.")

    @Option(help: "A diffusers model folder (default: the embedded world model).")
    var model: String?

    @Option(help: "Address to listen on; anything but loopback is reachable from other machines.")
    var host = "127.0.0.1"

    @Flag(help: "Listen on all interfaces (0.0.0.0), as the web UI's --listen.")
    var listen = false

    @Option(parsing: .unconditional, help: "Port (0: any free port, printed at start).")
    var port = 7860

    @Option(help: "The only folder the server writes to: results and attention maps.")
    var output = "nest-serve-output"

    @Option(name: .customLong("adapter"), help: "A subject adapter (NAME.json + NAME.safetensors) besides the model's own; repeatable.")
    var adapters: [String] = []

    @Option(parsing: .unconditional, help: "Requests that may wait behind the running one (past it: 503).")
    var queueLength = 16

    @Option(parsing: .unconditional, help: "Largest request body in MiB.")
    var maxBodyMb = 32

    @Option(parsing: .unconditional, help: "Seconds a job may run before it is cancelled.")
    var jobTimeout = 600

    @Option(parsing: .unconditional, help: "Most denoising steps a request may ask for.")
    var maxSteps = 150

    @Flag(help: "Hold the weights as float16 in memory.")
    var halfWeights = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, got \(port)") }
        guard (0...10_000).contains(queueLength) else { throw ValidationError("--queue-length must be between 0 and 10000, got \(queueLength)") }
        guard (1...4096).contains(maxBodyMb) else { throw ValidationError("--max-body-mb must be between 1 and 4096, got \(maxBodyMb)") }
        guard (1...86_400).contains(jobTimeout) else { throw ValidationError("--job-timeout must be between 1 and 86400 seconds, got \(jobTimeout)") }
        guard (1...1000).contains(maxSteps) else { throw ValidationError("--max-steps must be between 1 and 1000, got \(maxSteps)") }
        if listen && host != "127.0.0.1" { throw ValidationError("--listen and --host both choose the address: give one") }
    }

    var limits: ServerLimits {
        var limits = ServerLimits()
        limits.maxQueuedJobs = queueLength
        limits.maxBodyBytes = maxBodyMb << 20
        limits.jobTimeout = TimeInterval(jobTimeout)
        limits.generation.maxSteps = maxSteps
        return limits
    }

    func run() throws {
        try engine.apply()
        let model = DefaultModel.resolve(self.model)
        let address = listen ? "0.0.0.0" : host
        let server: NestServer
        do {
            let catalog = try AdapterCatalog(model: URL(fileURLWithPath: model), named: adapters)
            let folder = try OutputFolder(url: URL(fileURLWithPath: output))
            let start = Date()
            let pipeline = try StableDiffusionPipeline.load(folder: URL(fileURLWithPath: model))
            if halfWeights { pipeline.storeWeightsAsHalf() }
            let generator = Generator(pipeline: pipeline, catalog: catalog)
            generator.notice = { warn($0) }
            server = try NestServer(generator: generator,
                                    modelName: URL(fileURLWithPath: model).lastPathComponent, output: folder, limits: limits)
            note(String(format: "loaded %@ in %.1f s; subjects: %@; writing to %@", model, Date().timeIntervalSince(start),
                        server.subjectTokens.isEmpty ? "none" : server.subjectTokens.joined(separator: " "), folder.url.path))
        } catch { fail(cliMessage(error)) }
        if !["127.0.0.1", "localhost", "::1"].contains(address) {
            warn("listening on \(address): anyone who can reach this machine can generate images and read the results; there is no authentication")
        }
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        Task {
            do {
                try await server.run(host: address, port: port) { bound in
                    let shown = address.contains(":") ? "[\(address)]" : address
                    print("serving on http://\(shown):\(bound)/  (API: /sdapi/v1/txt2img; stop with Ctrl-C)")
                    fflush(stdout)
                }
            } catch { failure = error }
            finished.signal()
        }
        finished.wait()
        if let failure { fail("cannot serve on \(address):\(port): \(failure)") }
    }
}
