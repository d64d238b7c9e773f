import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NestDiffusion
import NestIO
import NestPersonalization
import NestServer

/// One server on a loopback port over the shipped world model, shared by the tests, with
/// small limits so that the 413 and 503 paths are cheap to reach.
enum Harness {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = root.appendingPathComponent("Sources/nest/Resources/world")
    static let output = FileManager.default.temporaryDirectory.appendingPathComponent("nest-server-tests-\(UUID().uuidString)")

    final class PortBox: @unchecked Sendable {
        let lock = NSCondition()
        var port: Int?
    }

    static let server: NestServer = {
        var limits = ServerLimits()
        limits.maxBodyBytes = 1 << 20
        limits.maxQueuedJobs = 1
        let catalog = try! AdapterCatalog(model: model, named: [])
        let pipeline = try! StableDiffusionPipeline.load(folder: model)
        return try! NestServer(generator: Generator(pipeline: pipeline, catalog: catalog), modelName: "world",
                               output: try! OutputFolder(url: output), limits: limits)
    }()

    /// The bound port, once the server listens.
    static let port: Int = {
        let box = PortBox()
        let server = server
        Task {
            try await server.run(host: "127.0.0.1", port: 0) { port in
                box.lock.lock(); box.port = port; box.lock.signal(); box.lock.unlock()
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
        let pixels = (0..<(64 * 64 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
        return try ImageFile.encodePNG(try RGBImage(width: 64, height: 64, pixels: pixels)).base64EncodedString()
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
