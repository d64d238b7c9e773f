import Foundation
import NestIO
import NestWorld

/// `nest eval`: generates held-out identities in held-out contexts with
/// each method and scores identity and prompt fidelity with `WorldMetrics`.
/// Held-out: the identities come from a seed stream the datasets never use;
/// the prompts (by default) pair background and style as no adapter dataset
/// written with `--hold-out` does (`Context.heldOutPairs`); and each subject
/// is shown to the adapter through one reference render (`Context.reference`),
/// never the target.
public struct WorldEvaluation {
    public struct Options: Sendable {
        public var identitiesPerDomain = 8
        public var promptsPerIdentity = 3
        public var steps = 20
        public var guidance: Float = 5
        public var valueNormalization: Float = 1
        public var seed: UInt64 = 9001
        /// Prompt only with held-out background × style pairs (`Context.heldOutPairs`);
        /// false: any context. `contexts` says the same with a third choice, seen pairs only.
        public var heldOutCombinations: Bool {
            get { contexts == .heldOut }
            set { contexts = newValue ? .heldOut : .any }
        }
        /// Which contexts the prompts draw from.
        public var contexts: ContextSet = .heldOut
        /// The context sets that get a table each in one run (nil: one table, `contexts`).
        public var contextTables: [ContextSet]? = nil
        /// `nest eval --seed`: which block of held-out individuals, and which
        /// contexts, are drawn (see `individualSeed`). Nil: the fixed draw from `seed`.
        public var drawSeed: UInt64? = nil
        /// How the prompted scenes are framed: the wide shot, or near framings
        /// drawn per case from their own stream (the rest of the draw does not
        /// change with them). Scene and near framings are not mixed: the
        /// prompt score's size aspect means different things in the two.
        public var framings: [Framing] = [.scene]
        /// How each subject's reference photo is framed (`Context.reference`);
        /// nil: the wide shot's for `scene`, a close-up (the whole subject,
        /// large) for near framings.
        public var referenceFraming: Framing? = nil
        /// The framing whose chance levels apply (every near framing has the same).
        public var framing: Framing { framings.first ?? .scene }
        public var referenceShot: Framing { referenceFraming ?? (framing == .scene ? .scene : .closeUp) }
        /// The side the truths are rendered at.
        public var side = WorldRenderer.side
        /// The individuals evaluated instead of a held-out draw, per domain in order (the
        /// first `identitiesPerDomain` of each): an adapter's own training individuals
        /// (`nest eval --individuals DATASET`) say how much of an identity the adapter
        /// can hold at all, apart from how well it generalizes.
        public var individuals: [Identity]? = nil
        /// Adds reference rows for the base model that need no image encoder: prompted with
        /// the subject's trait words (`WorldCaption.traitWords`), what words alone carry; and
        /// redrawing the truth from partial noise (image-to-image at `redrawStrengths`), how
        /// much of an individual the UNet keeps when the picture itself is given.
        public var boundRows = false
        /// How much of the subject the trait-words row and the lookalike row name: the
        /// words the model's captions were written with (`world.json`'s `trait_words`).
        public var traitDetail: TraitDetail = .glance
        public static let redrawStrengths: [Double] = [0.3, 0.6]
        /// Distractor individuals per scored subject (identity chance 1 / (distractors + 1)).
        /// Unless set: 7 for the wide shot, 31 for near framings (see `featureSide`).
        public var distractors: Int {
            get { chosenDistractors ?? (framing == .scene ? 7 : 31) }
            set { chosenDistractors = newValue }
        }
        /// Side of the identity score's features. Unless set: 16 (`WorldMetrics.featureSide`)
        /// for the wide shot, 32 for near framings, where 16×16 features among 7 distractors
        /// saturate (truth and the autoencoder's ceiling both at 1.00) and stop telling
        /// methods apart.
        public var featureSide: Int {
            get { chosenFeatureSide ?? (framing == .scene ? WorldMetrics.featureSide : 32) }
            set { chosenFeatureSide = newValue }
        }
        private var chosenDistractors: Int? = nil, chosenFeatureSide: Int? = nil
        public init() {}
    }

    /// One subject to generate: who, shown how, in which prompted scene.
    public struct Case {
        public var identity: Identity
        public var reference: RGBImage
        public var context: Context
        public var sceneSeed: UInt64
        public var distractors: [Identity]
        /// Two-subject cases: the companion (other domain) and its reference.
        public var companion: (identity: Identity, reference: RGBImage, distractors: [Identity])?
        /// The image side the case's truths are rendered at.
        public var side = WorldRenderer.side

        public var scene: SceneSpec {
            SceneSpec(subjects: WorldRenderer.subjects(identity: identity, context: context, seed: sceneSeed,
                                                       companion: companion?.identity),
                      background: context.background, style: context.style, framing: context.framing, side: side)
        }

        /// `traits`: the class word with the subject's trait words at that detail before it (no placeholders).
        public func prompt(placeholders: Bool, traits: TraitDetail? = nil) -> String {
            let scene = Scene(identity: identity, context: context, seed: sceneSeed)
            return WorldCaption.caption(for: scene, placeholder: placeholders ? "<\(identity.domain.rawValue)>" : nil,
                                        companionPlaceholder: placeholders && companion != nil ? "<\(identity.domain.other.rawValue)>" : nil,
                                        describe: placeholders ? nil : traits, seed: sceneSeed)
        }
    }

    public struct Row: Codable, Sendable {
        public var method: String
        public var images: Int
        /// Top-1 retrieval of the true subject among 1 + distractors, at any placement.
        public var identity: Double
        /// The same with every candidate at the prompted placement only.
        public var identityInPlace: Double
        /// Mean over subjects of the true subject's rank among the candidates
        /// (`WorldMetrics.identityRank`: 1 nearest, 0.5 chance).
        public var identityRank: Double = 0
        /// Mean over prompt aspects of recognizing the prompted value.
        public var prompt: Double
        public var aspects: [String: Double]
        /// Per scored subject, in case order, whether identity (any placement) was a hit:
        /// rows scored on the same cases can be compared case by case.
        public var identityHits: [Bool] = []
        /// Per scored subject, in the same order, its identity rank.
        public var identityRanks: [Double] = []
        /// Per case, the fraction of prompt aspects recognized (their mean is `prompt`).
        public var promptScores: [Double] = []
        /// The context set the row was scored on, in runs with a table per set.
        public var contexts: String? = nil
    }

    public let options: Options
    public init(options: Options = .init()) { self.options = options }

    /// Framing lists `nest eval` accepts: the wide shot alone, or near framings.
    public static func checkFramings(_ framings: [Framing]) throws {
        guard !framings.isEmpty else { throw EvaluationError("no framing given") }
        if framings.contains(.scene) && framings != [.scene] {
            throw EvaluationError("scene cannot be mixed with near framings (its size aspect is small/large, theirs the framing)")
        }
    }

    /// The held-out cases: single subjects of both domains, then two-subject scenes.
    public func cases(twoSubjects: Bool) -> [Case] {
        var rng = options.drawSeed.map { WorldRandom(seed: $0, stream: "evaluation.draw") }
            ?? WorldRandom(seed: options.seed, stream: "evaluation")
        var framingRNG = WorldRandom(seed: options.drawSeed ?? options.seed, stream: "evaluation.framing")
        func identities(_ domain: Domain, _ n: Int) -> [Identity] { (0..<n).map { _ in Identity.random(domain: domain, seed: rng.next()) } }
        /// The evaluated individuals: from the draw seed's own block when there is one.
        func individuals(_ domain: Domain, from first: Int, _ n: Int) -> [Identity] {
            if let listed = options.individuals?.filter({ $0.domain == domain }), !listed.isEmpty {
                return (first..<(first + n)).map { listed[$0 % listed.count] }
            }
            guard let draw = options.drawSeed else { return identities(domain, n) }
            return (first..<(first + n)).map { Identity.random(domain: domain, seed: Self.individualSeed(draw: draw, index: $0)) }
        }
        func reference(_ identity: Identity) -> RGBImage {
            let seed = rng.next()
            let context = Context.reference(background: rng.pick(Background.allCases), framing: options.referenceShot)
            return WorldRenderer.render(identity: identity, context: context, seed: seed)
        }
        var out: [Case] = []
        for domain in Domain.allCases {
            for identity in individuals(domain, from: 0, options.identitiesPerDomain) {
                let ref = reference(identity)
                for _ in 0..<options.promptsPerIdentity {
                    var context = Context.random(seed: rng.next())
                    while !options.contexts.admits(context) { context = Context.random(seed: rng.next()) }
                    context.companion = twoSubjects
                    context.framing = options.framings.count == 1 ? options.framings[0] : framingRNG.pick(options.framings)
                    var c = Case(identity: identity, reference: ref, context: context, sceneSeed: rng.next(),
                                 distractors: identities(domain, options.distractors), side: options.side)
                    if twoSubjects {
                        let other = individuals(domain.other, from: options.individuals == nil ? Self.companionIndex + out.count : out.count, 1)[0]
                        c.companion = (other, reference(other), identities(domain.other, options.distractors))
                    }
                    out.append(c)
                }
            }
            if twoSubjects { break }  // critter in front, bot as companion
        }
        return out
    }

    /// Scores `images` (one per case) against the cases' scenes.
    public func score(_ method: String, cases: [Case], images: [RGBImage]) -> Row {
        var identity = 0, inPlace = 0, identityCount = 0
        var hits: [Bool] = []
        var ranks: [Double] = []
        var aspectHits: [PromptAspect: Int] = [:]
        var promptScores: [Double] = []
        for (c, image) in zip(cases, images) {
            let scene = c.scene
            let main = scene.subjects.count - 1  // the main subject is drawn last
            var subjects = [(main, c.distractors)]
            if let companion = c.companion { subjects.append((0, companion.distractors)) }
            for (index, distractors) in subjects {
                let d = WorldMetrics.identityDistances(image, scene: scene, subject: index, distractors: distractors,
                                                       featureSide: options.featureSide)
                let hit = WorldMetrics.isHit(d)
                hits.append(hit)
                ranks.append(WorldMetrics.identityRank(d))
                identity += hit ? 1 : 0
                inPlace += WorldMetrics.identityHit(image, scene: scene, subject: index, distractors: distractors, anywhere: false,
                                                    featureSide: options.featureSide) ? 1 : 0
                identityCount += 1
            }
            let promptHits = WorldMetrics.promptHits(image, scene: scene, subject: main)
            for (aspect, hit) in promptHits where hit { aspectHits[aspect, default: 0] += 1 }
            promptScores.append(Double(promptHits.filter(\.value).count) / Double(PromptAspect.allCases.count))
        }
        let n = Double(images.count)
        var aspects: [String: Double] = [:]
        for aspect in PromptAspect.allCases { aspects[aspect.rawValue] = Double(aspectHits[aspect] ?? 0) / n }
        return Row(method: method, images: images.count, identity: Double(identity) / Double(identityCount),
                   identityInPlace: Double(inPlace) / Double(identityCount),
                   identityRank: ranks.reduce(0, +) / Double(max(ranks.count, 1)),
                   prompt: aspects.values.reduce(0, +) / Double(aspects.count), aspects: aspects, identityHits: hits, identityRanks: ranks, promptScores: promptScores)
    }

    /// Each row's identity against `base` case by case (same cases, same seeds):
    /// the mean difference and its standard error, which is smaller than
    /// either row's own because the cases' difficulty cancels.
    public static func pairedIdentity(_ rows: [Row], against base: Row) -> [(method: String, difference: Double, standardError: Double, cases: Int)] {
        paired(rows, against: base) { $0.identityHits.map { $0 ? 1 : 0 } }
    }

    /// The same for the graded identity (`Row.identityRanks`).
    public static func pairedIdentityRank(_ rows: [Row], against base: Row) -> [(method: String, difference: Double, standardError: Double, cases: Int)] {
        paired(rows, against: base) { $0.identityRanks }
    }

    static func paired(_ rows: [Row], against base: Row, _ values: (Row) -> [Double])
        -> [(method: String, difference: Double, standardError: Double, cases: Int)] {
        let reference = values(base)
        return rows.compactMap { r in
            let mine = values(r)
            guard mine.count == reference.count, !mine.isEmpty else { return nil }
            let d = zip(mine, reference).map { $0 - $1 }
            let n = Double(d.count), mean = d.reduce(0, +) / n
            let variance = n > 1 ? d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1) : 0
            return (r.method, mean, (variance / n).squareRoot(), d.count)
        }
    }

    /// The results as a Markdown table.
    public static func table(_ rows: [Row], chance: (identity: Double, prompt: Double, aspects: [Double])) -> String {
        var out = "| method | images | identity ↑ | identity in place | identity rank | prompt ↑ | background | position | size | style | accessory |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rows {
            let a = PromptAspect.allCases.map { String(format: "%.2f", r.aspects[$0.rawValue] ?? 0) }.joined(separator: " | ")
            out += String(format: "| %@ | %d | %.2f | %.2f | %.2f | %.2f | ", r.method, r.images, r.identity, r.identityInPlace,
                          r.identityRank, r.prompt) + a + " |\n"
        }
        let aspects = chance.aspects.map { String(format: "%.2f", $0) }.joined(separator: " | ")
        out += String(format: "| *chance* | | %.2f | %.2f | 0.50 | %.2f | ", chance.identity, chance.identity, chance.prompt) + aspects + " |\n"
        return out
    }
}
