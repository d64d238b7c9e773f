@testable import NestEvaluation
import Testing

/// `nest eval`'s paired comparison: the per-case identity hits of two rows
/// scored on the same cases give the mean difference and its standard error.
@Suite struct PairedIdentityTests {
    func row(_ method: String, _ hits: [Bool]) -> WorldEvaluation.Row {
        WorldEvaluation.Row(method: method, images: hits.count, identity: Double(hits.filter { $0 }.count) / Double(hits.count),
                            identityInPlace: 0, prompt: 0, aspects: [:], identityHits: hits)
    }

    @Test func differenceAndStandardErrorAreComputedCaseByCase() {
        let base = row("base", [false, false, true, false, true, false, false, false])
        // Wins two cases, loses one: differences +1, +1, −1 and five zeros.
        let method = row("method", [true, true, false, false, true, false, false, false])
        let other = row("fewer cases", [true, true])
        let paired = WorldEvaluation.pairedIdentity([method, other], against: base)
        #expect(paired.count == 1 && paired[0].method == "method" && paired[0].cases == 8)
        #expect(abs(paired[0].difference - 1.0 / 8) < 1e-12)
        // Sample variance of (1, 1, −1, 0, 0, 0, 0, 0) around 1/8: (3 − 8/64)/7.
        let se = ((3.0 - 8.0 / 64) / 7 / 8).squareRoot()
        #expect(abs(paired[0].standardError - se) < 1e-12)
        // A row against itself: no difference, no error.
        let same = WorldEvaluation.pairedIdentity([base], against: base)[0]
        #expect(same.difference == 0 && same.standardError == 0)
    }

    /// The graded identity pairs the same way, on the per-subject ranks.
    @Test func ranksArePairedCaseByCase() {
        var base = row("base", [false, false, false, false]), method = row("method", [true, false, false, false])
        base.identityRanks = [0.5, 0.25, 0.75, 0.5]
        method.identityRanks = [1, 0.5, 0.75, 0.25]
        let paired = WorldEvaluation.pairedIdentityRank([method], against: base)[0]
        // Differences 0.5, 0.25, 0, −0.25: mean 0.125, sample variance 0.3125 / 3 / 4.
        #expect(abs(paired.difference - 0.125) < 1e-12 && paired.cases == 4)
        #expect(abs(paired.standardError - (0.3125 / 3 / 4).squareRoot()) < 1e-12)
    }
}
