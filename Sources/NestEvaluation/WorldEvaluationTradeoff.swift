import Foundation
import NestDiffusion
import NestIO
import NestPersonalization

/// `nest eval --tradeoff`: identity against prompt fidelity as each method's
/// subject scale moves — the paper's trade-off figure for this world. The
/// single-subject cases are generated once per setting (the same cases and
/// seeds for every point, so points differ only by the setting) and scored
/// as the main evaluation scores them.
extension WorldEvaluationRun {
    /// One knob of one method at the values the sweep visits.
    public struct TradeoffCurve: Sendable {
        public enum Knob: String, Codable, Sendable {
            /// Nested Attention's subject-token weight w (log w on the token's logits).
            case tokenWeight = "token weight"
            /// Nested Attention's value normalization λ.
            case valueNormalization = "value normalization"
            /// The IP-Adapter-style baseline's image-attention scale.
            case adapterScale = "IP-Adapter scale"
        }
        public var method: String
        public var knob: Knob
        public var values: [Float]
    }

    /// The curves of the shipped figure; the baseline's only where the folder has its adapters.
    public static let tradeoffCurves = [
        TradeoffCurve(method: "Nested Attention", knob: .tokenWeight, values: [0.5, 1, 2, 4, 8]),
        TradeoffCurve(method: "Nested Attention", knob: .valueNormalization, values: [0.5, 1, 2, 4]),
        TradeoffCurve(method: "IP-Adapter-style decoupled attention", knob: .adapterScale, values: [0.25, 0.5, 1, 1.5, 2]),
    ]

    /// One scored setting, with the standard errors of its two means over cases.
    public struct TradeoffPoint: Codable, Sendable {
        public var method: String
        /// nil for the base model's point.
        public var knob: TradeoffCurve.Knob?
        public var value: Float?
        public var images: Int
        public var identity: Double
        public var identityStandardError: Double
        /// Mean rank of the true subject among the candidates (1 nearest, 0.5 chance):
        /// it moves before the top-1 score does.
        public var identityRank: Double
        public var identityRankStandardError: Double
        public var prompt: Double
        public var promptStandardError: Double
    }

    static func point(_ row: WorldEvaluation.Row, method: String, knob: TradeoffCurve.Knob?, value: Float?) -> TradeoffPoint {
        func standardError(_ xs: [Double]) -> Double {
            let n = Double(xs.count)
            guard n > 1 else { return 0 }
            let mean = xs.reduce(0, +) / n
            return (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1) / n).squareRoot()
        }
        return TradeoffPoint(method: method, knob: knob, value: value, images: row.images, identity: row.identity,
                             identityStandardError: standardError(row.identityHits.map { $0 ? 1 : 0 }),
                             identityRank: row.identityRank, identityRankStandardError: standardError(row.identityRanks),
                             prompt: row.prompt, promptStandardError: standardError(row.promptScores))
    }

    /// Generates and scores every point; writes tradeoff.json and tradeoff.md.
    func runTradeoff(pipeline: StableDiffusionPipeline, progress: (_ done: Int, _ total: Int) -> Void) throws -> Summary {
        let evaluation = WorldEvaluation(options: options)
        let single = evaluation.cases(twoSubjects: false)
        let nested = generator(pipeline, AdapterCatalog(model: model, kind: .nested))
        let ipAdapter = catalog(.ipAdapter).map { generator(pipeline, $0) }
        let curves = Self.tradeoffCurves.filter { $0.knob != .adapterScale || ipAdapter != nil }
        let total = single.count * (1 + curves.map(\.values.count).reduce(0, +))
        var done = 0
        func tick() { done += 1; progress(done, total) }

        let base = try evaluation.generate(nested, cases: single, adapters: false, progress: tick)
        var points = [Self.point(evaluation.score("base model", cases: single, images: base),
                                 method: "base model, class word", knob: nil, value: nil)]
        for curve in curves {
            for value in curve.values {
                let images: [RGBImage]
                switch curve.knob {
                case .tokenWeight:
                    images = try evaluation.generate(nested, cases: single, adapters: true, tokenWeight: value, progress: tick)
                case .valueNormalization:
                    images = try evaluation.generate(nested, cases: single, adapters: true, valueNormalization: value, progress: tick)
                case .adapterScale:
                    images = try evaluation.generate(ipAdapter!, cases: single, adapters: true, adapterScale: value, progress: tick)
                }
                let name = "\(curve.method), \(curve.knob.rawValue) \(value)"
                points.append(Self.point(evaluation.score(name, cases: single, images: images),
                                         method: curve.method, knob: curve.knob, value: value))
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(points).write(to: output.appendingPathComponent("tradeoff.json"))
        let table = Self.tradeoffTable(points)
        var report = "# Identity against prompt fidelity\n\n\(single.count) single-subject prompts "
        report += "(\(options.identitiesPerDomain) held-out identities per domain × \(options.promptsPerIdentity) contexts), "
        report += "the same cases and seeds at every setting; \(options.steps) steps, guidance \(options.guidance), "
        report += "model \(model.lastPathComponent), framings \(options.framings.map(\.rawValue).joined(separator: ", ")). "
        report += "Identity among the truth and \(options.distractors) distractors on \(options.featureSide)×\(options.featureSide) features "
        report += "(top-1, and the true subject's mean rank: 1 nearest, 0.5 chance); "
        report += "± one standard error over cases.\n\n" + table
        try Data(report.utf8).write(to: output.appendingPathComponent("tradeoff.md"))
        return Summary(table: table, written: ["tradeoff.md", "tradeoff.json"])
    }

    static func tradeoffTable(_ points: [TradeoffPoint]) -> String {
        var out = "| method | knob | value | identity ↑ | identity rank ↑ | prompt ↑ |\n|---|---|---:|---:|---:|---:|\n"
        for p in points {
            out += "| \(p.method) | \(p.knob?.rawValue ?? "—") | \(p.value.map { String(format: "%g", $0) } ?? "—") | "
            out += String(format: "%.2f ± %.2f | %.3f ± %.3f | %.2f ± %.2f |\n", p.identity, p.identityStandardError,
                          p.identityRank, p.identityRankStandardError, p.prompt, p.promptStandardError)
        }
        return out
    }
}
