import Foundation
import NestEvaluation
import NestWorld
import Testing

/// `nest eval --seed` and `--contexts`: which individuals and contexts a run draws.
@Suite struct EvaluationDrawTests {
    static func options(draw: UInt64?, identities: Int = 8, contexts: WorldEvaluation.ContextSet = .heldOut) -> WorldEvaluation.Options {
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = identities; options.promptsPerIdentity = 2
        options.drawSeed = draw; options.contexts = contexts
        return options
    }

    /// Every evaluated individual of a draw: main subjects and two-subject companions.
    static func individuals(_ options: WorldEvaluation.Options) -> [Identity] {
        let evaluation = WorldEvaluation(options: options)
        return evaluation.cases(twoSubjects: false).map(\.identity)
            + evaluation.cases(twoSubjects: true).flatMap { [$0.identity, $0.companion!.identity] }
    }

    @Test func differentSeedsNeverShareAnIndividual() {
        let draws: [UInt64] = [0, 1, 2, 3, 17, 1 << 20, WorldEvaluation.maximumDrawSeed]
        var owner: [String: UInt64] = [:]
        for draw in draws {
            for identity in Set(Self.individuals(Self.options(draw: draw)).map { "\($0)" }) {
                if let other = owner[identity] { Issue.record("draws \(other) and \(draw) share an individual") }
                owner[identity] = draw
            }
        }
        // 8 per domain plus one companion per two-subject case (8 × 2 prompts), per draw.
        #expect(owner.count == draws.count * (16 + 16), "\(owner.count) individuals")
        // The seeds themselves are distinct by construction.
        let seeds = draws.flatMap { d in (0..<64).map { WorldEvaluation.individualSeed(draw: d, index: $0) } }
        #expect(Set(seeds).count == seeds.count)
    }

    @Test func aDrawIsReproducibleAndItsContextsFollowTheChosenSet() {
        let a = WorldEvaluation(options: Self.options(draw: 5)).cases(twoSubjects: false)
        let b = WorldEvaluation(options: Self.options(draw: 5)).cases(twoSubjects: false)
        #expect(a.map { $0.prompt(placeholders: true) } == b.map { $0.prompt(placeholders: true) })
        #expect(a.map(\.identity) == b.map(\.identity) && a.map(\.sceneSeed) == b.map(\.sceneSeed))
        #expect(a.allSatisfy { $0.context.isHeldOut })
        let seen = WorldEvaluation(options: Self.options(draw: 5, contexts: .seen)).cases(twoSubjects: false)
        #expect(seen.allSatisfy { !$0.context.isHeldOut })
        // With a draw seed both tables evaluate the same individuals.
        #expect(seen.map(\.identity) == a.map(\.identity))
        let other = WorldEvaluation(options: Self.options(draw: 6)).cases(twoSubjects: false)
        #expect(Set(other.map(\.sceneSeed)).isDisjoint(with: a.map(\.sceneSeed)), "another draw, other scenes")
    }

    /// Without `--seed` the identities are the first draws of the "evaluation" stream of
    /// seed 9001, as before draw seeds existed (the draw docs/world-eval.md was made with).
    @Test func theDefaultDrawIsTheFixedOne() {
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 3
        #expect(options.drawSeed == nil && options.contexts == .heldOut && options.heldOutCombinations)
        let cases = WorldEvaluation(options: options).cases(twoSubjects: false)
        var rng = WorldRandom(seed: 9001, stream: "evaluation")
        let first = (0..<3).map { _ in Identity.random(domain: .critter, seed: rng.next()) }
        #expect(stride(from: 0, to: 9, by: 3).map { cases[$0].identity } == first)
        options.heldOutCombinations = false
        #expect(options.contexts == .any)
    }

    /// `nest eval --individuals DATASET`: the dataset's own individuals, in order per domain,
    /// main subjects and companions alike; a domain the dataset lacks falls back to the draw.
    @Test func givenIndividualsAreTheOnesEvaluated() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-individuals-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try WorldDataset.write(to: dir, identitiesPerDomain: 3, contextsPerIdentity: 2, seed: 11)
        let listed = try WorldEvaluation.individuals(dataset: dir)
        #expect(listed.count == 6)
        var options = Self.options(draw: nil, identities: 2)
        options.individuals = listed
        let cases = WorldEvaluation(options: options).cases(twoSubjects: false)
        let critters = listed.filter { $0.domain == .critter }, bots = listed.filter { $0.domain == .bot }
        #expect(cases.map(\.identity) == [critters[0], critters[0], critters[1], critters[1], bots[0], bots[0], bots[1], bots[1]])
        let pairs = WorldEvaluation(options: options).cases(twoSubjects: true)
        #expect(pairs.allSatisfy { c in bots.contains(c.companion!.identity) })
        // Distractors are still drawn: never the individual itself.
        #expect(cases.allSatisfy { !$0.distractors.contains($0.identity) })

        options.individuals = critters
        let fallback = WorldEvaluation(options: options).cases(twoSubjects: false)
        #expect(fallback.filter { $0.identity.domain == .bot }.allSatisfy { !bots.contains($0.identity) })

        #expect(throws: EvaluationError("\(dir.path)/images/identities.json: cannot be read; --individuals takes a folder written by `nest world dataset`")) {
            try WorldEvaluation.individuals(dataset: dir.appendingPathComponent("images"))
        }
        try Data("{}".utf8).write(to: dir.appendingPathComponent("identities.json"))
        #expect(throws: EvaluationError("\(dir.path)/identities.json: not a list of world individuals")) {
            try WorldEvaluation.individuals(dataset: dir)
        }
    }

    /// `nest eval --bounds`: the base model's prompt names the subject's trait words before its
    /// class word; the other prompts keep their wording.
    @Test func theTraitRowPromptsWithTraitWords() {
        var options = Self.options(draw: 2)
        options.boundRows = true
        let evaluation = WorldEvaluation(options: options)
        for c in evaluation.cases(twoSubjects: false) {
            let words = WorldCaption.traitWords(c.identity).joined(separator: " ") + " " + c.identity.domain.classWord
            let request = evaluation.request(c, adapters: false, traits: true)
            #expect(request.generation.prompt.contains(words), "\(request.generation.prompt)")
            #expect(request.subjects.isEmpty)
            #expect(evaluation.request(c, adapters: false).generation.prompt == c.prompt(placeholders: false))
            #expect(!c.prompt(placeholders: false).contains(words))
            // Placeholders never get trait words.
            #expect(c.prompt(placeholders: true, traits: .glance) == c.prompt(placeholders: true))
        }
        // A world described in full (world.json's trait_words) is prompted with its full words.
        options.traitDetail = .full
        let full = WorldEvaluation(options: options)
        for c in full.cases(twoSubjects: false) {
            let words = WorldCaption.traitWords(c.identity, detail: .full).joined(separator: " ") + " " + c.identity.domain.classWord
            #expect(full.request(c, adapters: false, traits: true).generation.prompt.contains(words))
        }
    }
}
