import Foundation
import NestIO
import NestModels

extension CLIPTokenizer {
    /// Writes a small CLIP tokenizer folder in the classic layout
    /// (`vocab.json`, `merges.txt`, `special_tokens_map.json`,
    /// `tokenizer_config.json`) whose merges spell each word of `corpus` as a
    /// single token. Any other text still tokenizes, byte by byte: the
    /// vocabulary holds all 256 byte symbols with and without `</w>`.
    /// Ids: bytes, bytes + `</w>`, merge results, then start and end tokens
    /// last (as in CLIP), so `eos` is the largest id.
    public static func writeVocabulary(spelling corpus: [String], maxLength: Int, to folder: URL) throws {
        let bytes = BytePairEncoding.byteToCharacter.map { String($0) }
        var vocabulary: [String: Int] = [:]
        var order: [String] = []
        func add(_ token: String) {
            if vocabulary[token] == nil { vocabulary[token] = order.count; order.append(token) }
        }
        bytes.forEach(add)
        bytes.forEach { add($0 + BytePairEncoding.endOfWord) }

        // Every distinct pre-token of the corpus, most frequent first so that
        // common words get the earliest (winning) merges.
        var counts: [String: Int] = [:]
        for text in corpus {
            for word in preTokenize(normalize(text)) { counts[word, default: 0] += 1 }
        }
        let words = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        var merges: [(String, String)] = []
        var seen = Set<String>()
        for word in words {
            var symbols = Array(word.utf8).map { bytes[Int($0)] }
            guard symbols.count > 1 else { continue }
            symbols[symbols.count - 1] += BytePairEncoding.endOfWord
            // Left to right: ((w0 w1) w2) …, each step a merge of its own.
            var left = symbols[0]
            for next in symbols.dropFirst() {
                let merged = left + next
                if seen.insert(left + " " + next).inserted { merges.append((left, next)); add(merged) }
                left = merged
            }
        }
        // An earlier merge of a shared part can split a later word (the
        // suffix "to</w>" of "to" inside "photo"). Join such words' pieces
        // with merges ranked after all others: a word that was already whole
        // is still merged the same way, so this converges.
        for _ in 0..<8 {
            let bpe = BytePairEncoding(merges: merges)
            let split = words.map { bpe.encode(word: $0) }.filter { $0.count > 1 }
            if split.isEmpty { break }
            for pieces in split {
                var left = pieces[0]
                for next in pieces.dropFirst() {
                    if seen.insert(left + " " + next).inserted { merges.append((left, next)); add(left + next) }
                    left += next
                }
            }
        }
        let bpe = BytePairEncoding(merges: merges)
        let split = words.filter { bpe.encode(word: $0).count != 1 }
        guard split.isEmpty else {
            throw ModelConfigError("vocabulary: words not spelled whole: \(split.prefix(5).joined(separator: ", "))")
        }
        let bos = "<|startoftext|>", eos = "<|endoftext|>"
        add(bos); add(eos)

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let mergeText = "#version: 0.2\n" + merges.map { "\($0.0) \($0.1)\n" }.joined()
        let special: [String: String] = ["bos_token": bos, "eos_token": eos, "unk_token": eos, "pad_token": eos]
        let config: [String: Any] = ["bos_token": bos, "eos_token": eos, "unk_token": eos, "pad_token": eos,
                                     "model_max_length": maxLength, "tokenizer_class": "CLIPTokenizer"]
        let files: [(String, Data)] = [
            ("vocab.json", try encoder.encode(vocabulary)), ("merges.txt", Data(mergeText.utf8)),
            ("special_tokens_map.json", try encoder.encode(special)),
            ("tokenizer_config.json", try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys, .prettyPrinted])),
        ]
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw ModelConfigError("\(folder.path): cannot create folder (\(FileErrorText.reason(error)))")
        }
        for (name, data) in files {
            let url = folder.appendingPathComponent(name)
            do { try data.write(to: url, options: .atomic) } catch {
                throw ModelConfigError("\(url.path): cannot write (\(FileErrorText.reason(error)))")
            }
        }
    }
}
