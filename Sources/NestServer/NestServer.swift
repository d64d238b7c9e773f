import Foundation
import Hummingbird
import NestDiffusion
import NestPersonalization

/// What one server serves: the loaded model (through its `Generator`), the facts about it
/// that requests are checked against before they queue, and the output folder.
public final class NestServer: @unchecked Sendable {
    public let modelName: String
    public let limits: ServerLimits
    public let output: OutputFolder
    public let queue: GenerationQueue
    /// Read once at start so that requests are checked on the HTTP threads without
    /// touching the generator, which only the queue's worker uses.
    let geometry: PipelineGeometry
    let catalog: AdapterCatalog
    let defaultSampler: SchedulerKind
    let page: StaticPage

    public init(generator: Generator, modelName: String, output: OutputFolder, limits: ServerLimits = ServerLimits()) throws {
        self.modelName = modelName
        self.limits = limits
        self.output = output
        geometry = generator.pipeline.geometry
        catalog = generator.catalog
        defaultSampler = try generator.pipeline.makeScheduler(GenerationConfiguration(prompt: "")).kind
        page = try StaticPage.load()
        queue = GenerationQueue(generator: generator, limits: limits)
    }

    /// The placeholder tokens a request may bind subjects to.
    public var subjectTokens: [String] { catalog.files.keys.sorted() }

    /// Serves on `host:port` until the process is stopped; `onRunning` gets the bound port
    /// (useful with port 0, which picks a free one).
    public func run(host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = Application(
            router: makeRouter(),
            // A connection idle, or slow to send its request, past this is closed; one
            // waiting for its job is not idle.
            server: .http1(configuration: .init(idleTimeout: .seconds(Int64(limits.idleTimeout)))),
            configuration: .init(address: .hostname(host, port: port), serverName: "nest"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) })
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/sdapi/v1/txt2img") { request, _ in await self.answer { try await self.generate(request, imageToImage: false) } }
        router.post("/sdapi/v1/img2img") { request, _ in await self.answer { try await self.generate(request, imageToImage: true) } }
        router.get("/sdapi/v1/progress") { _, _ in APIResponse.json(WebUIStatus.progress(self.queue.progress)) }
        router.post("/sdapi/v1/interrupt") { _, _ in
            self.queue.interrupt()
            return APIResponse.json([String: Any]())
        }
        router.post("/sdapi/v1/skip") { _, _ in APIResponse.json([String: Any]()) }
        router.get("/sdapi/v1/sd-models") { _, _ in APIResponse.json(WebUIStatus.models(name: self.modelName)) }
        router.get("/sdapi/v1/samplers") { _, _ in APIResponse.json(WebUIStatus.samplers) }
        router.get("/sdapi/v1/schedulers") { _, _ in APIResponse.json(WebUIStatus.schedules) }
        router.get("/sdapi/v1/options") { _, _ in APIResponse.json(WebUIStatus.options(name: self.modelName)) }
        router.get("/sdapi/v1/scripts") { _, _ in
            APIResponse.json(["txt2img": [NestedAttentionScript.name], "img2img": [NestedAttentionScript.name]])
        }
        router.get("/nest/subjects") { _, _ in APIResponse.json(["tokens": self.subjectTokens]) }
        router.get("/nest/gallery") { _, _ in
            APIResponse.json(["images": self.output.gallery.map { ["url": "/nest/files/" + $0.name, "parameters": $0.parameters] }])
        }
        router.get("/nest/attention") { _, _ in
            APIResponse.json(["maps": self.output.attentionMaps.map { "/nest/files/" + $0 }])
        }
        router.get("/nest/files/**") { _, context in
            guard let data = self.output.read(context.parameters.getCatchAll().map(String.init)) else {
                return APIResponse.error(.notFound, "no such image in the output folder")
            }
            return APIResponse.bytes(data, type: "image/png")
        }
        router.get("/") { _, _ in self.page.response("index.html") }
        router.get("/page/:name") { _, context in self.page.response(context.parameters.get("name") ?? "") }
        return router
    }

    /// Turns the errors a request can meet into their status codes and JSON bodies.
    func answer(_ body: () async throws -> Response) async -> Response {
        do { return try await body() } catch let error as RequestFieldError {
            return APIResponse.fieldError(error)
        } catch let error as GenerationRequestError {
            return APIResponse.fieldError(RequestFieldError(WebUIRequest.apiField(error.field), error.problem))
        } catch let error as BodyTooLarge {
            return APIResponse.error(.contentTooLarge, error.description)
        } catch let error as QueueFull {
            return APIResponse.error(.serviceUnavailable, error.description)
        } catch let error as JobTimedOut {
            return APIResponse.error(.serviceUnavailable, error.description)
        } catch {
            return APIResponse.error(.internalServerError, String(describing: error))
        }
    }

    func generate(_ request: Request, imageToImage: Bool) async throws -> Response {
        let body = try await readBody(request)
        let asked = try WebUIRequest.decode(json: body, limits: limits, imageToImage: imageToImage)
        try checkField {
            try geometry.validate(asked.request.generation)
            _ = try catalog.tokens(for: asked.request.subjects)
            try catalog.checkPlaceholders(asked.request)
        }
        let job = output.reserveNumber()
        let attention = asked.request.recordAttention ? output.attentionFolder(job: job) : nil
        let started = Date()
        let outcome = try await queue.run(asked.request, attentionFolder: attention)
        let response = WebUIResponse(asked: asked, outcome: outcome, modelName: modelName, defaultSampler: defaultSampler)
        let pngs = try response.pngs()
        for (image, png) in zip(outcome.images, pngs) {
            _ = try output.save(png: png, seed: image.seed, job: job, index: image.index, parameters: response.parameters(image))
        }
        if outcome.attentionFolder != nil { output.recordAttention(job: job) }
        return APIResponse.bytes(try response.body(pngs: pngs, timestamp: started), type: "application/json")
    }

    /// The body, refused with 413 past the limit (by its declared length before reading any of it).
    func readBody(_ request: Request) async throws -> Data {
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limits.maxBodyBytes {
            throw BodyTooLarge(limit: limits.maxBodyBytes)
        }
        do {
            let buffer = try await request.body.collect(upTo: limits.maxBodyBytes)
            return Data(buffer.readableBytesView)
        } catch let error as HTTPResponseError where error.status == .contentTooLarge {
            throw BodyTooLarge(limit: limits.maxBodyBytes)
        }
    }
}

struct BodyTooLarge: Error, CustomStringConvertible {
    let limit: Int
    var description: String { "the request body is larger than the server's \(limit / (1 << 20)) MiB limit" }
}
