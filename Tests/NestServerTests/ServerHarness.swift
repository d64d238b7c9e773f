import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NestDiffusion
import NestIO
import NestModels
import NestPersonalization
import NestServer
import NestTestSupport

/// One server on a loopback port, shared by the tests, over the tiny SD1 pipeline fixture
/// with an image encoder and a random Nested Attention adapter for `<critter>` in its
/// `adapters/` (32×32 images, the cheapest model there is), with small limits so that the
/// 413 and 503 paths are cheap to reach.
enum Harness {
    static let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nest-server-tests-\(UUID().uuidString)")
    static let output = scratch.appendingPathComponent("served")

    /// The model folder: the fixture's components and image encoder linked, plus the adapter.
    static let model: URL = {
        let model = ModelFolderFixture.withImageEncoder("sd1", prefix: "nest-server-model")
        try! FileManager.default.createDirectory(at: model.appendingPathComponent("adapters"), withIntermediateDirectories: true)
        let pipeline = ModelFolderFixture.tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines/sd1")
        let unet = try! UNet2DConditionModel.load(folder: pipeline.appendingPathComponent("unet"))
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4),
                                   layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers))
        try! PersonalizationAdapter(config: config, seed: 4).save(path: model.appendingPathComponent("adapters/critter.json").path)
        return model
    }()

    final class PortBox: @unchecked Sendable {
        let lock = NSCondition()
        var port: Int?
        func set(_ value: Int) { lock.lock(); port = value; lock.signal(); lock.unlock() }
    }

    static let server: NestServer = {
        var limits = ServerLimits()
        limits.maxBodyBytes = 1 << 20
        limits.maxQueuedJobs = 1
        limits.generation.maxSteps = 1000
        let catalog = try! AdapterCatalog(model: model, named: [])
        let pipeline = try! StableDiffusionPipeline.load(folder: model)
        return try! NestServer(generator: Generator(pipeline: pipeline, catalog: catalog), modelName: "tiny",
                               output: try! OutputFolder(url: output), limits: limits)
    }()

    /// The bound port, once the server listens.
    static let port: Int = {
        let box = PortBox()
        let shared = Harness.server
        Task {
            try await shared.run(host: "127.0.0.1", port: 0) { port in
                box.set(port)
            }
        }
        box.lock.lock()
        while box.port == nil { box.lock.wait() }
        defer { box.lock.unlock() }
        return box.port!
    }()

    struct Reply {
        let status: Int
        let data: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
    }

    static func send(_ method: String, _ path: String, body: Data? = nil) async throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 300
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return Reply(status: (response as! HTTPURLResponse).statusCode, data: data)
    }

    static func txt2img(_ fields: [String: Any]) async throws -> Reply {
        try await send("POST", "/sdapi/v1/txt2img", body: try JSONSerialization.data(withJSONObject: fields))
    }

    /// A subject photo as a client sends it.
    static func photoBase64(seed: UInt8) throws -> String {
        let pixels = (0..<(48 * 48 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
        return try ImageFile.encodePNG(try RGBImage(width: 48, height: 48, pixels: pixels)).base64EncodedString()
    }

    /// Waits until the queue runs a job that has made at least one step.
    static func waitForFirstStep() async throws {
        for _ in 0..<2000 {
            let state = try await send("GET", "/sdapi/v1/progress").json["state"] as? [String: Any]
            if let step = state?["sampling_step"] as? Int, step > 0, (state?["job"] as? String)?.isEmpty == false { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw CancellationError()
    }
}
