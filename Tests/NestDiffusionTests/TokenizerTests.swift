import Foundation
import NestDiffusion
import Testing

/// Token ids against transformers' CLIPTokenizer (tools/make_tokenizer_fixtures.py),
/// for the classic folder layout, the tokenizer.json layout, and SDXL's second
/// tokenizer that pads with "!".
@Suite struct TokenizerTests {
    struct Case: Decodable { let prompt: String; let ids: [Int]; let ids_with_placeholder: [Int] }
    struct Expected: Decodable { let cases: [Case]; let placeholder_ids: [Int] }

    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    static let expected: [String: Expected] = {
        let data = try! Data(contentsOf: fixtures.appendingPathComponent("tokenizer_ids.json"))
        return try! JSONDecoder().decode([String: Expected].self, from: data)
    }()

    @Test(arguments: ["tokenizer_classic", "tokenizer_fast", "tokenizer_2"])
    func idsMatchTransformers(folder: String) throws {
        var tokenizer = try CLIPTokenizer.load(folder: Self.fixtures.appendingPathComponent(folder))
        let expected = Self.expected[folder]!
        for c in expected.cases {
            #expect(tokenizer.encode(c.prompt) == c.ids, "\(folder): \"\(c.prompt)\"")
        }
        // Placeholders added the way personalization adds them.
        #expect(tokenizer.addToken("<person>") == expected.placeholder_ids[0])
        #expect(tokenizer.addToken("<pet>") == expected.placeholder_ids[1])
        for c in expected.cases {
            #expect(tokenizer.encode(c.prompt) == c.ids_with_placeholder, "\(folder) with placeholders: \"\(c.prompt)\"")
        }
    }

    @Test func padTokenFollowsTheFolder() throws {
        let first = try CLIPTokenizer.load(folder: Self.fixtures.appendingPathComponent("tokenizer_classic"))
        let second = try CLIPTokenizer.load(folder: Self.fixtures.appendingPathComponent("tokenizer_2"))
        #expect(first.padId == first.eosId)
        #expect(second.padId != second.eosId, "SDXL's second tokenizer pads with '!', not the end token")
        #expect(second.padToken == "!")
    }

    @Test func lengthIsAlwaysMaxLengthAndEndsWithEOS() throws {
        let tokenizer = try CLIPTokenizer.load(folder: Self.fixtures.appendingPathComponent("tokenizer_fast"))
        let long = tokenizer.encode(String(repeating: "cat dog ", count: 100))
        #expect(long.count == 77)
        #expect(long.first == tokenizer.bosId && long.last == tokenizer.eosId)
        #expect(tokenizer.encode("").prefix(2) == [tokenizer.bosId, tokenizer.eosId])
    }

    @Test func missingFilesAreReported() {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("nest-empty-tokenizer-\(UUID())")
        try? FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(throws: (any Error).self) { try CLIPTokenizer.load(folder: empty) }
        do { _ = try CLIPTokenizer.load(folder: empty) } catch {
            #expect(String(describing: error).contains("no tokenizer.json or vocab.json"))
        }
    }
}
