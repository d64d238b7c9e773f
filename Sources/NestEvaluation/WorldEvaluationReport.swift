import Foundation
import NestIO
import NestWorld

extension WorldEvaluationRun {
    /// results.md: what was evaluated and how, the table, the paired identity differences and the prompts.
    func report(_ tables: [Table]) -> String {
        let heading = "# Miniature world evaluation\n\n"
        guard tables.count > 1 else { return heading + report(tables[0]) }
        var out = heading + "One table per context set, each on its own prompts"
        out += options.drawSeed.map { ", all with the individuals of draw seed \($0).\n" } ?? ".\n"
        for table in tables { out += "\n## \(table.set.title)\n\n" + report(table) }
        return out
    }

    /// One table's section: what was evaluated and how, the table, the paired differences and the prompts.
    func report(_ table: Table) -> String {
        let evaluation = table.evaluation, rows = table.rows, options = evaluation.options
        let single = table.images.single, cases = single.count, pairs = table.images.pairs.count
        let who = options.individuals == nil ? "held-out identities" : "given (not held-out) identities"
        var report = "\(cases) single-subject prompts (\(options.identitiesPerDomain) \(who) per domain × "
        report += "\(options.promptsPerIdentity) contexts) and \(pairs) two-subject prompts; \(options.steps) steps, "
        report += "guidance \(options.guidance), model \(model.lastPathComponent). "
        switch options.contexts {
        case .heldOut:
            report += "Every prompt pairs a background and a style that no adapter saw in training (\(Context.heldOutPairs.map { "\($0.0.rawValue) + \($0.1.rawValue)" }.joined(separator: ", "))). "
        case .seen: report += "Every prompt pairs a background and a style the adapters saw in training. "
        case .any: report += "Prompts with any context. "
        }
        if let draw = options.drawSeed { report += "Individuals and contexts of draw seed \(draw). " }
        if options.framings != [.scene] {
            report += "Framings \(options.framings.map(\.rawValue).joined(separator: ", ")) (drawn per prompt); "
            report += "each subject shown through one \(options.referenceShot.rawValue) reference. "
        }
        if options.boundRows {
            report += "Reference rows for the base model: the trait-words row prompts it with the subject's trait words before its class word; "
            report += "the redrawing rows give it the truth (class-word prompt) noised to that image-to-image strength. "
        }
        report += "Identity: the true subject's render is the nearest among it and \(options.distractors) distractors of its domain, "
        report += "each rendered at every position and size (in place: at the prompted placement only) "
        report += "(two-subject rows: both subjects counted). Prompt: per aspect, the prompted value's render is the nearest among all values.\n\n"
        report += WorldEvaluation.table(rows.all, chance: chance)
        let paired = WorldEvaluation.pairedIdentity(rows.methods, against: rows.base)
            + WorldEvaluation.pairedIdentity([rows.pairNested], against: rows.pairBase)
        report += "\nIdentity against the base model on the same cases (mean difference ± its standard error):\n\n"
        let ranks = WorldEvaluation.pairedIdentityRank(rows.methods, against: rows.base)
            + WorldEvaluation.pairedIdentityRank([rows.pairNested], against: rows.pairBase)
        for (p, r) in zip(paired, ranks) {
            report += String(format: "- %@: %+.3f ± %.3f (%d subjects); identity rank %+.3f ± %.3f\n", p.method, p.difference,
                             p.standardError, p.cases, r.difference, r.standardError)
        }
        report += "\nPrompts (first of each identity):\n\n"
        for c in stride(from: 0, to: single.count, by: options.promptsPerIdentity).map({ single[$0] }) {
            report += "- \(c.prompt(placeholders: true))\n"
        }
        return report
    }

    /// comparison.png: one case per row — the reference photo, Nested Attention, each baseline
    /// (in the results' order), the base model with the class word, and the truth — for the
    /// first two prompts of the first two identities of each domain.
    func comparison(_ images: Images, truth: [RGBImage]) -> RGBImage {
        let prompts = options.promptsPerIdentity, identities = options.identitiesPerDomain
        var tiles: [RGBImage] = []
        for domain in 0..<2 {
            for identity in 0..<min(2, identities) {
                for j in 0..<min(2, prompts) {
                    let k = (domain * identities + identity) * prompts + j
                    tiles.append(images.single[k].reference)
                    tiles.append(images.nested[k])
                    for baseline in images.baselines { tiles.append(baseline.images[k]) }
                    tiles.append(images.base[k])
                    tiles.append(truth[k])
                }
            }
        }
        return ContactSheet.make(tiles, columns: 4 + images.baselines.count).enlarged(2)
    }

    /// samples.png: per identity (the first two of each domain) the reference, Nested Attention
    /// for each prompt, then the truths; then two-subject scenes beside their base-model images.
    func samples(_ images: Images, truth: [RGBImage]) throws -> RGBImage {
        let prompts = options.promptsPerIdentity, identities = options.identitiesPerDomain
        let single = images.single, pairs = images.pairs
        var tiles: [RGBImage] = []
        let columns = max(2 * prompts + 1, 5)
        let shown = Array(0..<min(2, identities)) + Array(identities..<(identities + min(2, identities)))
        for k in shown {
            let first = k * prompts
            tiles.append(single[first].reference)
            for j in 0..<prompts { tiles.append(images.nested[first + j]) }
            for j in 0..<prompts { tiles.append(truth[first + j]) }
            tiles.append(contentsOf: Array(repeating: RGBImage.blank(64), count: columns - 2 * prompts - 1))
        }
        for k in 0..<min(2, pairs.count) {
            tiles.append(pairs[k].reference); tiles.append(pairs[k].companion!.reference)
            tiles.append(images.pairNested[k]); tiles.append(pairs[k].scene.render(seed: 7))
            tiles.append(images.pairBase[k]); tiles.append(contentsOf: Array(repeating: RGBImage.blank(64), count: columns - 5))
        }
        return ContactSheet.make(tiles, columns: columns).enlarged(2)
    }

    /// `autoencoderOnly`: results.md with the validation rows and autoencoder.png (truths beside their reconstructions).
    func writeAutoencoderCheck(_ validation: Validation, cases: Int) throws -> Summary {
        let error = Self.pixelError(validation.truth, validation.throughVAE)
        var table = WorldEvaluation.table(validation.rows, chance: chance)
        table += String(format: "\nPer pixel, truth against truth through the VAE: mean absolute error %.2f of 255, PSNR %.1f dB.\n",
                        error.meanAbsolute, error.psnr)
        var report = "# Autoencoder check\n\n\(cases) held-out scenes, model \(model.lastPathComponent), "
        report += "framing \(options.framings.map(\.rawValue).joined(separator: ", ")), \(options.side)×\(options.side) pixels, "
        report += "identity on \(options.featureSide)×\(options.featureSide) features among \(options.distractors) distractors.\n\n" + table
        try Data(report.utf8).write(to: output.appendingPathComponent("results.md"))
        var tiles: [RGBImage] = []
        for (t, r) in zip(validation.truth, validation.throughVAE).prefix(32) { tiles.append(t); tiles.append(r) }
        try ImageFile.writePNG(ContactSheet.make(tiles, columns: 8).enlarged(2),
                               to: output.appendingPathComponent("autoencoder.png").path)
        return Summary(table: table, written: ["results.md", "autoencoder.png"])
    }
}

extension WorldEvaluationRun {
    /// Mean absolute byte difference and PSNR over image pairs of equal size.
    static func pixelError(_ a: [RGBImage], _ b: [RGBImage]) -> (meanAbsolute: Double, psnr: Double) {
        var absolute = 0.0, squared = 0.0, count = 0.0
        for (x, y) in zip(a, b) {
            for i in x.pixels.indices {
                let d = Double(x.pixels[i]) - Double(y.pixels[i])
                absolute += abs(d); squared += d * d
            }
            count += Double(x.pixels.count)
        }
        let mse = squared / max(count, 1)
        return (absolute / max(count, 1), mse > 0 ? 10 * log10(255 * 255 / mse) : .infinity)
    }
}

extension RGBImage {
    /// A white square, for the empty cells of a contact sheet.
    static func blank(_ side: Int) -> RGBImage {
        try! RGBImage(width: side, height: side, pixels: [UInt8](repeating: 255, count: side * side * 3))
    }
}
