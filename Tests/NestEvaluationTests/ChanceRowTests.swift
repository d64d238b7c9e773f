@testable import NestEvaluation
import NestWorld
import Testing

/// The table's chance row follows what each aspect asks: in the wide shot the size aspect
/// picks one of two sizes, in a near framing one of three framings.
@Suite struct ChanceRowTests {
    func chanceRow(_ framing: Framing) -> [String] {
        let chance = (identity: 1.0 / 8, prompt: WorldMetrics.promptChance(framing: framing),
                      aspects: WorldMetrics.aspectChance(framing: framing))
        let table = WorldEvaluation.table([], chance: chance)
        let line = table.split(separator: "\n").first { $0.hasPrefix("| *chance*") }!
        return line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    @Test func wideShotAndNearFramingsHaveTheirOwnChance() {
        // Columns: method, images, identity, in place, rank, prompt, background, position, size, style, accessory.
        let wide = chanceRow(.scene)
        #expect(Array(wide[4...]) == ["0.50", "0.32", "0.17", "0.33", "0.50", "0.33", "0.25"])
        let near = chanceRow(.portrait)
        #expect(near[8] == "0.33", "size chance in a near framing: \(near[8])")
        #expect(near[5] == String(format: "%.2f", (1 / 6.0 + 1 / 3.0 + 1 / 3.0 + 1 / 3.0 + 1 / 4.0) / 5))
        #expect(WorldMetrics.promptChance == WorldMetrics.promptChance(framing: .scene))
    }
}
