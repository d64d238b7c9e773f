import Foundation
import NestIO
import NestModels
import NestTraining
import Testing

/// Training configs are read strictly: every value in range, every key known,
/// one-line errors naming the key and the value; checking needs no model.
@Suite struct TrainingConfigTests {
    static let adapterBase = """
        {"model": "m", "data": "d.jsonl", "output": "out",
         "adapter": {"placeholder_token": "<c>", "class_word": "cat",
                     "resampler": {"width": 16, "depth": 1, "heads": 2, "queries": 4}},
         "training": {"steps": 4}}
        """
    static let baseBase = #"{"model": "m", "data": "d.jsonl", "output": "out"}"#

    /// `base` with `value` set at `path` ("training.learning_rate"), as JSON text.
    static func edited(_ base: String, _ path: String, _ value: Any) -> String {
        var object = try! JSONSerialization.jsonObject(with: Data(base.utf8)) as! [String: Any]
        func set(_ dict: inout [String: Any], _ keys: ArraySlice<Substring>) {
            let key = String(keys.first!)
            if keys.count == 1 { dict[key] = value; return }
            var inner = dict[key] as? [String: Any] ?? [:]
            set(&inner, keys.dropFirst())
            dict[key] = inner
        }
        set(&object, path.split(separator: ".")[...])
        return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    /// The error message of loading `text` as a config, nil when it loads.
    static func error<T>(_ text: String, _ load: (URL) throws -> T) -> String? {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-config-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        try! Data(text.utf8).write(to: url)
        do { _ = try load(url); return nil } catch { return String(describing: error) }
    }

    static let adapterCases: [(String, Any)] = [
        ("checkpoint_every", 0), ("log_every", 0), ("sample_every", 0), ("validation_batches", 0), ("log_every", -5),
        ("training.learning_rate", -0.001), ("training.learning_rate", 0), ("training.steps", 0), ("training.batch_size", 0),
        ("training.resolution", -64), ("training.warmup_steps", -1), ("training.gradient_accumulation", 0),
        ("training.weight_decay", -1), ("training.gradient_clip", 0), ("training.ema", 1), ("training.ema", -0.5),
        ("training.drop_image", 1.5), ("training.drop_text", -0.1), ("training.drop_both", 2),
        ("training.subject_loss_weight", -2), ("training.timestep_range", [500, 100]), ("training.timestep_range", [-1, 10]),
        ("training.timestep_range", [1, 2, 3]), ("training.learning_rate", 1e300),
        ("adapter.resampler.width", 0), ("adapter.resampler.heads", -1), ("adapter.resampler.depth", 100000),
        ("adapter.resampler.queries", 0), ("adapter.resampler.head_dim", 0), ("adapter.placeholder_token", ""),
        ("adapter.class_word", "a\ncat"), ("output", ""), ("training.precision", "fp8"), ("adapter.nested_value", "sum"),
    ]

    @Test func everyAdapterValueIsRangeChecked() {
        #expect(Self.error(Self.adapterBase, AdapterRunConfig.load) == nil)
        for (path, value) in Self.adapterCases {
            let message = Self.error(Self.edited(Self.adapterBase, path, value), AdapterRunConfig.load)
            guard let message else { Issue.record("\(path) = \(value) was accepted"); continue }
            let key = String(path.split(separator: ".").last!)
            #expect(message.contains(key), "\(path): \(message)")
            #expect(!message.contains("\n") && !message.isEmpty, "\(path): \(message)")
        }
    }

    static let baseCases: [(String, Any)] = [
        ("checkpoint_every", 0), ("log_every", 0), ("sample_every", 0), ("steps", 0), ("batch_size", 0), ("resolution", 0),
        ("learning_rate", -1e-4), ("weight_decay", -0.1), ("warmup_steps", -10), ("gradient_clip", -1), ("kl_weight", -1e-6),
        ("caption_dropout", 1.5), ("logvar_shift", 1000), ("attention_localization.weight", -1),
        ("attention_localization.words", [String]()), ("data", ""),
        ("loss_weighting", "min-snr"), ("snr_gamma", 5), ("ema", 1), ("ema", -0.1), ("ema_warmup", true), ("validation_data", ""),
        ("precision", "half"),
    ]

    @Test func everyBaseValueIsRangeChecked() {
        #expect(Self.error(Self.baseBase, BaseRunConfig.load) == nil)
        for (path, value) in Self.baseCases {
            var text = Self.edited(Self.baseBase, path, value)
            if path.hasPrefix("attention_localization") {
                let valid = Self.edited(Self.edited(Self.edited(Self.baseBase, "flip", false), "attention_localization.weight", 0.05),
                                        "attention_localization.words", ["cat"])
                #expect(Self.error(valid, BaseRunConfig.load) == nil)
                text = Self.edited(valid, path, value)
            }
            let message = Self.error(text, BaseRunConfig.load)
            guard let message else { Issue.record("\(path) = \(value) was accepted"); continue }
            #expect(message.contains(String(path.split(separator: ".").last!)), "\(path): \(message)")
            #expect(!message.contains("\n"), "\(path): \(message)")
        }
    }

    /// `adapter.nested_value` is read for nested adapters and refused by name for the baselines.
    @Test func nestedValueAppliesToNestedAdaptersOnly() throws {
        let adding = Self.edited(Self.adapterBase, "adapter.nested_value", "add")
        #expect(Self.error(adding, AdapterRunConfig.load) == nil)
        #expect(Self.error(Self.edited(adding, "adapter.kind", "nested"), AdapterRunConfig.load) == nil)
        let baseline = try #require(Self.error(Self.edited(adding, "adapter.kind", "ip-adapter"), AdapterRunConfig.load))
        #expect(baseline.contains("adapter.nested_value") && baseline.contains("ip-adapter") && !baseline.contains("\n"), "\(baseline)")
    }

    @Test func messagesNameTheKeyAndTheValue() throws {
        let zero = try #require(Self.error(Self.edited(Self.adapterBase, "checkpoint_every", 0), AdapterRunConfig.load))
        #expect(zero.hasSuffix("checkpoint_every must be at least 1, got 0"), "\(zero)")
        let rate = try #require(Self.error(Self.edited(Self.adapterBase, "training.learning_rate", -0.5), AdapterRunConfig.load))
        #expect(rate.contains("training.learning_rate must be a finite number > 0, got -0.5"), "\(rate)")
        let vae = try #require(Self.error(Self.edited(Self.baseBase, "log_every", 0), BaseRunConfig.load))
        #expect(vae.contains("config.json: log_every must be at least 1, got 0"), "\(vae)")
    }

    /// A misspelled key at any level is refused by name, with the key it was probably meant to be.
    @Test func unknownKeysAreRefusedAtEveryLevel() throws {
        let adapterCases: [(String, String)] = [
            ("lerning_rate", #"unknown key "lerning_rate""#), ("training.lerning_rate", #"training: unknown key "lerning_rate" (did you mean "learning_rate"?)"#),
            ("adapter.clas_word", #"adapter: unknown key "clas_word" (did you mean "class_word"?)"#),
            ("adapter.resampler.widht", #"adapter.resampler: unknown key "widht" (did you mean "width"?)"#),
            ("checkpoint_evry", #"unknown key "checkpoint_evry" (did you mean "checkpoint_every"?)"#),
            ("zzz_unrelated", #"unknown key "zzz_unrelated""#),
        ]
        for (path, expected) in adapterCases {
            let message = Self.error(Self.edited(Self.adapterBase, path, 1), AdapterRunConfig.load)
            #expect(message?.contains(expected) == true, "\(path): \(message ?? "accepted")")
        }
        let baseCases: [(String, String)] = [
            ("lerning_rate", #"unknown key "lerning_rate" (did you mean "learning_rate"?)"#),
            ("attention_localization.wieght", #"attention_localization: unknown key "wieght" (did you mean "weight"?)"#),
        ]
        for (path, expected) in baseCases {
            var text = Self.edited(Self.baseBase, path, 1)
            if path.hasPrefix("attention_localization") {
                text = Self.edited(Self.edited(Self.edited(text, "attention_localization.weight", 0.1), "attention_localization.words", ["cat"]), "flip", false)
            }
            let message = Self.error(text, BaseRunConfig.load)
            #expect(message?.contains(expected) == true, "\(path): \(message ?? "accepted")")
        }
        // Control characters in a key are shown, not printed.
        let odd = try #require(Self.error(Self.edited(Self.baseBase, "bad\u{1B}[2Jkey", 1), BaseRunConfig.load))
        #expect(odd.contains(#"bad\u{1B}[2Jkey"#) && !odd.contains("\u{1B}"), "\(odd)")
    }

    @Test func wrongTypesAndBadEnumsAreOneLine() throws {
        let cases = [Self.edited(Self.adapterBase, "training.steps", "ten"), Self.edited(Self.adapterBase, "training", [1, 2]),
                     Self.edited(Self.adapterBase, "training.schedule", "cos\nine"), Self.edited(Self.baseBase, "seed", -1),
                     "{\"model\": ", "[]", "", "\u{0}\u{1}"]
        for text in cases {
            let message = try #require(Self.error(text, AdapterRunConfig.load), "\(text) was accepted")
            #expect(!message.contains("\n") && message.contains("config.json"), "\(message)")
        }
    }

    /// A FIFO given as the config is refused at once instead of waiting for a writer.
    @Test func aFIFOConfigIsRefusedWithoutBlocking() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-fifo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("config.json")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        for load in [{ _ = try AdapterRunConfig.load(from: $0) }, { _ = try BaseRunConfig.load(from: $0) }] as [(URL) throws -> Void] {
            do { try load(fifo); Issue.record("a FIFO was read as a config") } catch {
                #expect(String(describing: error).contains("FIFO"), "\(error)")
            }
        }
        #expect(throws: ManifestError.self) { try TrainingManifest(url: fifo) }
    }
}

/// Manifest records of the wrong type or with hostile text are line-numbered
/// problems on one line each; special files are refused without reading them.
@Suite struct HostileManifestTests {
    @Test func wrongTypesAndSpecialFilesAreOneLineProblems() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-manifest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("folder"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = try RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 7, count: 48))
        for name in ["a.png", "b.png"] { try ImageFile.writePNG(image, to: dir.appendingPathComponent(name).path) }
        #expect(mkfifo(dir.appendingPathComponent("fifo").path, 0o600) == 0)
        let lines = [
            #"{"image": "a.png", "caption": "a <c>", "references": ["b.png"]}"#,
            #"{"image": 5, "caption": "a <c>", "references": ["b.png"]}"#,
            #"{"image": "a.png", "caption": ["a <c>"], "references": ["b.png"]}"#,
            #"{"image": "a.png", "caption": "a <c>", "references": "b.png"}"#,
            #"{"image": "a.png", "caption": "a <c>", "references": ["b.png"], "mask": 3}"#,
            #"{"image": "fifo", "caption": "a <c>", "references": ["b.png"]}"#,
            #"{"image": "/dev/zero", "caption": "a <c>", "references": ["b.png"]}"#,
            #"{"image": "folder", "caption": "a <c>", "references": ["b.png"]}"#,
            #"{"image": "a.png", "caption": "a\n\u001B[2J <d>", "references": ["b.png"]}"#,
            "{\"image\": \"a.png\", \"caption\": \"" + String(repeating: "x", count: 70_000) + "\"}",
            String(decoding: [0xFF, 0xFE, 0x7B], as: UTF8.self),
            String(repeating: "[", count: 50_000),
        ]
        let url = dir.appendingPathComponent("train.jsonl")
        var data = Data(lines.joined(separator: "\n").utf8)
        data.append(contentsOf: [10, 0xC3, 0x28, 10])  // invalid UTF-8
        try data.write(to: url)
        let manifest = try TrainingManifest(url: url, placeholder: "<c>", requireReferences: true)
        #expect(manifest.samples.map(\.line) == [1])
        #expect(manifest.problems.map(\.line) == Array(2...13))
        for problem in manifest.problems { #expect(!problem.description.contains("\n") && !problem.description.contains("\u{1B}"), "\(problem)") }
        let messages = manifest.problems.map(\.message)
        #expect(messages[0].contains(#""image" must be a path"#) && messages[1].contains(#""caption" must be a string"#))
        #expect(messages[2].contains(#""references" must be a list"#) && messages[3].contains(#""mask" must be a path"#))
        #expect(messages[4].contains("FIFO") && messages[5].contains("character device") && messages[6].contains("folder"))
        #expect(messages[8].contains("70") && messages[11].contains("UTF-8"), "\(messages)")
    }
}
