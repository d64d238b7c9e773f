import Foundation

/// Byte-level byte-pair encoding as CLIP uses it: every UTF-8 byte of a word
/// maps to a printable character (GPT-2's byte table), the word's last symbol
/// carries the end-of-word marker `</w>`, and merges are applied best-rank first.
struct BytePairEncoding {
    /// Byte → the character standing for it in the vocabulary.
    static let byteToCharacter: [Character] = {
        // Printable Latin-1 bytes stand for themselves; the rest are shifted above 255.
        var printable = Set<Int>()
        for r in [33...126, 161...172, 174...255] { printable.formUnion(r) }
        var table = [Character](repeating: " ", count: 256)
        var next = 256
        for b in 0..<256 {
            if printable.contains(b) {
                table[b] = Character(Unicode.Scalar(UInt32(b))!)
            } else {
                table[b] = Character(Unicode.Scalar(UInt32(next))!)
                next += 1
            }
        }
        return table
    }()

    static let endOfWord = "</w>"

    let ranks: [Pair: Int]
    /// Words already split; shared by copies of the tokenizer and safe across threads.
    private let cache = WordCache()

    final class WordCache: @unchecked Sendable {
        private var words: [String: [String]] = [:]
        private let lock = NSLock()
        func get(_ word: String) -> [String]? { lock.lock(); defer { lock.unlock() }; return words[word] }
        func set(_ word: String, _ symbols: [String]) {
            lock.lock(); defer { lock.unlock() }
            if words.count < 50_000 { words[word] = symbols }
        }
    }

    struct Pair: Hashable {
        let first: String
        let second: String
    }

    init(merges: [(String, String)]) {
        var ranks: [Pair: Int] = [:]
        ranks.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() where ranks[Pair(first: m.0, second: m.1)] == nil {
            ranks[Pair(first: m.0, second: m.1)] = i
        }
        self.ranks = ranks
    }

    /// A word (one pre-token) as byte characters, split into BPE symbols.
    func encode(word: String) -> [String] {
        if let hit = cache.get(word) { return hit }
        var symbols = Array(word.utf8).map { String(Self.byteToCharacter[Int($0)]) }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += Self.endOfWord
        while symbols.count > 1 {
            // The adjacent pair with the lowest merge rank.
            var best: (rank: Int, index: Int)? = nil
            for i in 0..<(symbols.count - 1) {
                if let r = ranks[Pair(first: symbols[i], second: symbols[i + 1])], r < (best?.rank ?? Int.max) {
                    best = (r, i)
                }
            }
            guard let (_, index) = best else { break }
            let first = symbols[index], second = symbols[index + 1]
            // Merge every occurrence of this pair, left to right.
            var merged: [String] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i < symbols.count - 1 && symbols[i] == first && symbols[i + 1] == second {
                    merged.append(first + second)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        cache.set(word, symbols)
        return symbols
    }
}
