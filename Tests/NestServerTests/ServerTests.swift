import Foundation
import NestIO
import Testing

/// The HTTP API over loopback: answers, the 4xx for each bad field, the body limit,
/// the queue's bound and interrupt. Serialized: they share one server and its queue.
@Suite(.serialized) struct ServerTests {
    static let good: [String: Any] = ["prompt": "a critter on grass", "steps": 2, "seed": 11, "sampler_name": "Euler a",
                                      "cfg_scale": 7, "width": 32, "height": 32]

    @Test func txt2imgAnswersInTheWebUIShape() async throws {
        let reply = try await Harness.txt2img(Self.good.merging(["batch_size": 2]) { $1 })
        #expect(reply.status == 200, "\(String(decoding: reply.data, as: UTF8.self))")
        let images = try #require(reply.json["images"] as? [String])
        #expect(images.count == 2)
        let png = try #require(Data(base64Encoded: images[0]))
        let image = try ImageFile.decode(data: png, name: "reply")
        #expect(image.width == 32 && image.height == 32)
        let text = try ImageFile.readPNGText(data: png, name: "reply")
        let parameters = try #require(text.first { $0.key == "parameters" }?.value)
        #expect(parameters.hasPrefix("a critter on grass\nSteps: 2, Sampler: Euler a, "), "\(parameters)")
        #expect(parameters.contains("Seed: 11,"))
        let info = try #require(try JSONSerialization.jsonObject(with: Data((reply.json["info"] as! String).utf8)) as? [String: Any])
        #expect(info["all_seeds"] as? [Int] == [11, 11])
        #expect((info["infotexts"] as? [String])?.first == parameters)
        #expect(Harness.server.output.gallery.count >= 2)
    }

    @Test func sameSeedSamePixels() async throws {
        let a = try await Harness.txt2img(Self.good), b = try await Harness.txt2img(Self.good)
        #expect(a.status == 200 && b.status == 200)
        #expect((a.json["images"] as? [String]) == (b.json["images"] as? [String]))
    }

    /// Each bad field is a 422 whose JSON names that field.
    @Test(arguments: [
        (["steps": 0], "steps"), (["steps": 1001], "steps"), (["cfg_scale": "high"], "cfg_scale"), (["cfg_scale": 1000], "cfg_scale"),
        (["width": 4000], "width"), (["width": 70], "width"), (["height": 30], "height"), (["seed": -7], "seed"), (["sampler_name": "LMS"], "sampler_name"),
        (["scheduler": "Exponential"], "scheduler"), (["batch_size": 0], "batch_size"), (["n_iter": 100], "n_iter"),
        (["prompt": String(repeating: "x", count: 5000)], "prompt"), (["enable_hr": true], "enable_hr"),
        (["prompt": "a <critter> at home"], "prompt"),
        (["alwayson_scripts": ["nested attention": ["args": [["subjects": [["token": "<nobody>", "images": ["AAAA"]]]]]]]],
         "alwayson_scripts.nested attention.args[0].subjects[0].images[0]"),
        (["alwayson_scripts": ["nested attention": ["args": [["subjects": []]]]]], "alwayson_scripts.nested attention.args[0].subjects"),
        (["alwayson_scripts": ["nested attention": ["args": [["subjects": [["token": "<critter>", "images": [1]]]]]]]],
         "alwayson_scripts.nested attention.args[0].subjects[0].images[0]"),
        (["alwayson_scripts": ["nested attention": ["args": [["subjects": [["token": "<critter>", "images": ["AAAA"]]], "token_weight": "heavy"]]]]],
         "alwayson_scripts.nested attention.args[0].token_weight"),
    ] as [([String: Any], String)])
    func badFieldIs422NamingIt(_ change: [String: Any], _ field: String) async throws {
        let reply = try await Harness.txt2img(Self.good.merging(change) { $1 })
        #expect(reply.status == 422, "\(change): \(String(decoding: reply.data, as: UTF8.self))")
        #expect(reply.json["field"] as? String == field, "\(String(decoding: reply.data, as: UTF8.self))")
        let detail = (reply.json["detail"] as? [[String: Any]])?.first
        #expect((detail?["loc"] as? [String]) == ["body", field])
    }

    @Test func unknownSubjectTokenNamesTheAdapters() async throws {
        let photo = try Harness.photoBase64(seed: 1)
        let script = ["nested attention": ["args": [["subjects": [["token": "<nobody>", "images": [photo]]]]]]]
        let reply = try await Harness.txt2img(Self.good.merging(["alwayson_scripts": script]) { $1 })
        #expect(reply.status == 422)
        #expect(reply.json["field"] as? String == "alwayson_scripts.nested attention.args[0].subjects")
        #expect((reply.json["error"] as? String)?.contains("<critter>") == true)
    }

    /// The library's own checks of the subject settings, renamed to the script's fields.
    @Test func subjectSettingsOutOfRangeNameTheirField() async throws {
        let photo = try Harness.photoBase64(seed: 2)
        for (key, value) in [("token_weight", -1), ("value_normalization", 1000)] {
            let script = ["nested attention": ["args": [["subjects": [["token": "<critter>", "images": [photo]]], key: value]]]]
            let reply = try await Harness.txt2img(Self.good.merging(["prompt": "a <critter>", "alwayson_scripts": script]) { $1 })
            #expect(reply.status == 422)
            #expect(reply.json["field"] as? String == "alwayson_scripts.nested attention.args[0].\(key)", "\(reply.json)")
        }
    }

    @Test func hugePhotoIsRefusedFromItsHeader() async throws {
        // A valid PNG whose header claims 5000×5000 pixels (and holds no pixel data):
        // refused from its header, before any pixel is decoded.
        let png = "iVBORw0KGgoAAAANSUhEUgAAE4gAABOICAIAAADS+hCcAAAACElEQVR4nAMAAAAAAUgGidIAAAAASUVORK5CYII="
        let script = ["nested attention": ["args": [["subjects": [["token": "<critter>", "images": [png]]]]]]]
        let reply = try await Harness.txt2img(Self.good.merging(["prompt": "a <critter>", "alwayson_scripts": script]) { $1 })
        #expect(reply.status == 422)
        #expect((reply.json["error"] as? String)?.contains("5000x5000") == true, "\(reply.json)")
    }

    @Test func notJSONIs422() async throws {
        let reply = try await Harness.send("POST", "/sdapi/v1/txt2img", body: Data("{steps: 2".utf8))
        #expect(reply.status == 422 && reply.json["field"] as? String == "body")
    }

    @Test func bodyPastTheLimitIs413() async throws {
        let big = Self.good.merging(["negative_prompt": String(repeating: "y", count: 2 << 20)]) { $1 }
        let reply = try await Harness.txt2img(big)
        #expect(reply.status == 413)
        #expect((reply.json["error"] as? String)?.contains("1 MiB") == true)
        // The server is still up and answers the next request.
        #expect(try await Harness.send("GET", "/sdapi/v1/progress").status == 200)
    }

    @Test func personalizedRequestRecordsAttentionMaps() async throws {
        let photo = try Harness.photoBase64(seed: 3)
        let script = ["nested attention": ["args": [["subjects": [["token": "<critter>", "images": [photo]]],
                                                      "value_normalization": 2, "attention_maps": true]]]]
        let reply = try await Harness.txt2img(Self.good.merging(["prompt": "a <critter> on grass", "alwayson_scripts": script]) { $1 })
        #expect(reply.status == 200, "\(String(decoding: reply.data, as: UTF8.self))")
        let plain = try await Harness.txt2img(Self.good.merging(["prompt": "a critter on grass"]) { $1 })
        #expect((reply.json["images"] as? [String]) != (plain.json["images"] as? [String]))
        let maps = try #require(try await Harness.send("GET", "/nest/attention").json["maps"] as? [String])
        #expect(maps.contains { $0.hasSuffix("-outer.png") }, "\(maps)")
        let file = try await Harness.send("GET", maps[0].addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!)
        #expect(file.status == 200)
        #expect((try? ImageFile.decode(data: file.data, name: "map")) != nil)
    }

    @Test func filesOutsideTheOutputFolderAreNotServed() async throws {
        for path in ["/nest/files/../Package.swift", "/nest/files/%2e%2e/%2e%2e/etc/passwd", "/nest/files/.hidden.png"] {
            #expect(try await Harness.send("GET", path).status == 404, "\(path)")
        }
    }

    /// One job runs, one waits, the third is refused with 503; interrupt ends the running
    /// one at its next step with the images finished before (none here).
    @Test func queueBoundAndInterrupt() async throws {
        let long = Self.good.merging(["steps": 1000]) { $1 }
        async let first = Harness.txt2img(long)
        try await Harness.waitForFirstStep()
        async let second = Harness.txt2img(Self.good)
        try await Task.sleep(nanoseconds: 300_000_000)
        let third = try await Harness.txt2img(Self.good)
        #expect(third.status == 503, "\(String(decoding: third.data, as: UTF8.self))")
        let progress = try await Harness.send("GET", "/sdapi/v1/progress").json
        #expect((progress["state"] as? [String: Any])?["job_count"] as? Int == 2)
        #expect((progress["progress"] as? Double ?? 0) > 0)
        #expect(try await Harness.send("POST", "/sdapi/v1/interrupt").status == 200)
        let interrupted = try await first
        #expect(interrupted.status == 200)
        let info = try JSONSerialization.jsonObject(with: Data((interrupted.json["info"] as? String ?? "{}").utf8)) as? [String: Any]
        #expect(info?["interrupted"] as? Bool == true)
        #expect((interrupted.json["images"] as? [String])?.isEmpty == true)
        #expect(try await second.status == 200)
    }

    @Test func img2imgStartsFromTheInitImage() async throws {
        let photo = try Harness.photoBase64(seed: 5)
        let reply = try await Harness.send("POST", "/sdapi/v1/img2img", body: try JSONSerialization.data(withJSONObject:
            Self.good.merging(["init_images": ["data:image/png;base64," + photo], "denoising_strength": 0.5, "steps": 4]) { $1 }))
        #expect(reply.status == 200, "\(String(decoding: reply.data, as: UTF8.self))")
        let png = try #require((reply.json["images"] as? [String])?.first.flatMap { Data(base64Encoded: $0) })
        #expect(try ImageFile.decode(data: png, name: "reply").width == 32)
        let text = try ImageFile.readPNGText(data: png, name: "reply").first { $0.key == "parameters" }?.value ?? ""
        #expect(text.contains("Denoising strength: 0.5"), "\(text)")
        // The same request as text-to-image differs.
        let plain = try await Harness.txt2img(Self.good.merging(["steps": 4]) { $1 })
        #expect((plain.json["images"] as? [String])?.first != png.base64EncodedString())
        for (change, field) in [(["init_images": [String]()], "init_images"), (["init_images": [photo], "denoising_strength": 2], "denoising_strength")] as [([String: Any], String)] {
            let bad = try await Harness.send("POST", "/sdapi/v1/img2img", body: try JSONSerialization.data(withJSONObject: Self.good.merging(change) { $1 }))
            #expect(bad.status == 422 && bad.json["field"] as? String == field, "\(bad.json)")
        }
        #expect(try await Harness.txt2img(Self.good.merging(["init_images": [photo]]) { $1 }).json["field"] as? String == "init_images")
    }

    @Test func informationalEndpoints() async throws {
        let samplers = try JSONSerialization.jsonObject(with: try await Harness.send("GET", "/sdapi/v1/samplers").data) as? [[String: Any]]
        #expect(samplers?.map { $0["name"] as? String } == ["Euler a", "Euler", "DDIM", "DPM++ 2M", "DPM++ 2M Karras"])
        let models = try JSONSerialization.jsonObject(with: try await Harness.send("GET", "/sdapi/v1/sd-models").data) as? [[String: Any]]
        #expect(models?.first?["title"] as? String == "tiny")
        #expect(try await Harness.send("GET", "/sdapi/v1/options").json["sd_model_checkpoint"] as? String == "tiny")
        let page = try await Harness.send("GET", "/")
        #expect(page.status == 200 && String(decoding: page.data, as: UTF8.self).contains("/page/app.js"))
        #expect(try await Harness.send("GET", "/page/app.js").status == 200)
    }
}
