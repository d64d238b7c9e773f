import Foundation
import NestDiffusion
import NestServer
import Testing

/// The web UI's fields as the library's request, without a server.
@Suite struct RequestMappingTests {
    func decode(_ fields: [String: Any]) throws -> WebUIRequest {
        try WebUIRequest.decode(json: try JSONSerialization.data(withJSONObject: fields), limits: ServerLimits())
    }

    @Test func fieldsMapToTheLibrarysRequest() throws {
        let r = try decode(["prompt": "a cat", "negative_prompt": "blur", "steps": 12, "cfg_scale": 5.5, "seed": 42,
                            "width": 64, "height": 96, "sampler_name": "DPM++ 2M Karras", "batch_size": 2, "n_iter": 3])
        let g = r.request.generation
        #expect(g.prompt == "a cat" && g.negativePrompt == "blur" && g.steps == 12 && g.guidanceScale == 5.5)
        #expect(g.seed == 42 && g.width == 64 && g.height == 96)
        #expect(g.scheduler == .dpmSolverMultistep && g.karras == true)
        #expect(g.count == 6 && g.batchSize == 2 && g.batches.count == 3)
        #expect(!r.randomSeed)
    }

    @Test(arguments: [("Euler a", SchedulerKind.eulerAncestral), ("k_euler", .euler), ("DDIM", .ddim), ("dpm++2m", .dpmSolverMultistep)])
    func samplerNames(_ name: String, _ kind: SchedulerKind) throws {
        #expect(try decode(["sampler_name": name]).request.generation.scheduler == kind)
    }

    @Test func defaultsAndRandomSeed() throws {
        let r = try decode(["prompt": "x", "negative_prompt": "", "scheduler": "automatic", "styles": [], "eta": 1.0])
        #expect(r.request.generation.negativePrompt == nil)  // empty is none, as `nest generate` without the option
        #expect(r.request.generation.scheduler == nil && r.request.generation.karras == nil)
        #expect(r.randomSeed && r.request.generation.seed < (1 << 32))
        #expect(try decode(["scheduler": "Karras"]).request.generation.karras == true)
    }

    @Test func booleansAreNotNumbers() throws {
        #expect(throws: RequestFieldError("steps", "must be a number")) { try decode(["steps": true]) }
        #expect(throws: RequestFieldError("steps", "must be a whole number, got 2.5")) { try decode(["steps": 2.5]) }
    }
}

/// The output folder: numbers continue after what is there, nothing is replaced, and
/// only plain names inside it are read back.
@Suite struct OutputFolderTests {
    @Test func numbersContinueAndNothingIsOverwritten() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nest-output-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: url.appendingPathComponent("00007-0-1.png"))
        let folder = try OutputFolder(url: url)
        let job = folder.reserveNumber()
        #expect(job == 8)
        let name = try folder.save(png: Data("png".utf8), seed: 5, job: job, index: 0, parameters: "p")
        #expect(name == "00008-0-5.png")
        #expect(throws: (any Error).self) { try folder.save(png: Data(), seed: 5, job: job, index: 0, parameters: "p") }
        #expect(folder.read([name]) == Data("png".utf8))
        #expect(folder.read(["00007-0-1.png"]) == Data("mine".utf8))
        #expect(folder.read(["..", "etc", "passwd.png"]) == nil)
        #expect(folder.read(["00008-0-5.txt"]) == nil)
        #expect(folder.gallery.map(\.name) == [name])
    }
}
