import NestIO

/// A scene to compare generations against: subjects in place, background,
/// style, framing, and the image side it is drawn at.
public struct SceneSpec: Sendable {
    public var subjects: [PlacedSubject]
    public var background: Background
    public var style: Style
    public var framing: Framing
    public var side: Int

    public init(subjects: [PlacedSubject], background: Background, style: Style, framing: Framing = .scene,
                side: Int = WorldRenderer.side) {
        self.subjects = subjects; self.background = background; self.style = style
        self.framing = framing; self.side = side
    }

    /// One subject in a context (with the context's companion, if any).
    public init(identity: Identity, context: Context, seed: UInt64, side: Int = WorldRenderer.side) {
        self.init(subjects: WorldRenderer.subjects(identity: identity, context: context, seed: seed),
                  background: context.background, style: context.style, framing: context.framing, side: side)
    }

    public func render(seed: UInt64, supersampling: Int = WorldRenderer.supersampling) -> RGBImage {
        WorldRenderer.render(subjects: subjects, background: background, style: style, seed: seed,
                             supersampling: supersampling, framing: framing, side: side)
    }
}

/// The aspects of a scene a prompt names, each scored separately.
public enum PromptAspect: String, CaseIterable, Sendable { case background, position, size, style, accessory }

/// The world's two scores, both by comparison with ground-truth renders (the
/// world is procedural, so the truth can be drawn):
///
/// - identity: render the prompted scene with the true subject and with each
///   of N distractor individuals of the same domain (same background, style
///   and render seeds, each at every position and size, so only the
///   individual differs); the image scores when the true subject's nearest
///   render is nearer than every distractor's. Chance is 1/(N+1). (The
///   stricter variant keeps the prompted placement only.)
/// - prompt: for each aspect the prompt names, render the scene with every
///   value of that aspect (the rest as prompted); the aspect scores when the
///   prompted value's render is the nearest. Chance is 1/(number of values).
///   In a near framing (`Framing.near`) the size aspect is the framing: the
///   subject's size there follows from the shot (chance 1/3).
///
/// Nearness: squared distance of 16×16 box-filtered images (fine enough for
/// markings and palette, coarse enough to forgive a pixel of placement),
/// minimum over a few render seeds (background props and placement jitter).
public enum WorldMetrics {
    public static let renderSeeds: [UInt64] = [101, 202, 303, 404]
    /// Features are `featureSide`×`featureSide` box-filtered images; a finer
    /// side can be asked for where subjects fill the frame.
    public static let featureSide = 16
    /// Candidates are drawn 2×2 supersampled: 4× cheaper than the world's
    /// own renders, and the same 16×16 features to within a level or two.
    static let metricSupersampling = 2

    /// Box-filtered image as floats in [0, 1].
    public static func feature(_ image: RGBImage, side f: Int = featureSide) -> [Float] {
        let bx = image.width / f, by = image.height / f
        var out = [Float](repeating: 0, count: f * f * 3)
        for y in 0..<image.height {
            for x in 0..<image.width {
                let o = ((min(y / by, f - 1) * f) + min(x / bx, f - 1)) * 3, i = (y * image.width + x) * 3
                for c in 0..<3 { out[o + c] += Float(image.pixels[i + c]) }
            }
        }
        let scale = 1 / (255 * Float(bx * by))
        return out.map { $0 * scale }
    }

    static func distance(_ a: [Float], _ b: [Float]) -> Float {
        var s: Float = 0
        for i in a.indices { let d = a[i] - b[i]; s += d * d }
        return s
    }

    /// Distance from `image` to the nearest render of `scene` over the render seeds.
    static func distance(_ image: [Float], _ scene: SceneSpec, featureSide: Int = featureSide) -> Float {
        renderSeeds.map {
            distance(image, feature(scene.render(seed: $0, supersampling: metricSupersampling), side: featureSide))
        }.min()!
    }

    /// Index of the nearest candidate scene.
    public static func nearest(_ image: RGBImage, among candidates: [SceneSpec]) -> Int {
        let f = feature(image)
        let d = candidates.map { distance(f, $0) }
        return d.indices.min { d[$0] < d[$1] }!
    }

    /// Whether subject `index` of `scene` is recognized among `distractors`.
    /// `anywhere`: each candidate individual is also rendered at every
    /// position and size, and its nearest placement counts — who the subject
    /// is, wherever it stands (a face-recognition score is blind to framing
    /// too; where it stands is the prompt score's business). Otherwise only
    /// the prompted placement counts.
    /// `featureSide` above 16 compares finer features (for near framings).
    public static func identityHit(_ image: RGBImage, scene: SceneSpec, subject index: Int = 0,
                                   distractors: [Identity], anywhere: Bool = true, featureSide: Int = featureSide) -> Bool {
        let d = identityDistances(image, scene: scene, subject: index, distractors: distractors, anywhere: anywhere,
                                  featureSide: featureSide)
        return isHit(d)
    }

    /// The top-1 rule on `identityDistances`: the true subject (first) is the nearest.
    public static func isHit(_ distances: [Float]) -> Bool {
        distances.indices.min { distances[$0] < distances[$1] }! == 0
    }

    /// The distances `identityHit` compares: from `image` to the scene with the true subject
    /// (first) and with each distractor in its place, each at its nearest placement.
    public static func identityDistances(_ image: RGBImage, scene: SceneSpec, subject index: Int = 0,
                                         distractors: [Identity], anywhere: Bool = true, featureSide: Int = featureSide) -> [Float] {
        let f = feature(image, side: featureSide)
        // Near framings draw every size alike: only positions differ there.
        let sizes = scene.framing == .scene ? SubjectSize.allCases : [scene.subjects[index].placement.size]
        let placements: [SceneSpec] = anywhere
            ? Position.allCases.flatMap { position in sizes.map { size in
                var s = scene
                s.subjects[index].placement.position = position
                s.subjects[index].placement.size = size
                return s
            } }
            : [scene]
        return ([scene.subjects[index].identity] + distractors).map { who in
            placements.map { p in
                var s = p; s.subjects[index].identity = who
                return distance(f, s, featureSide: featureSide)
            }.min()!
        }
    }

    /// A graded identity from `identityDistances`: the fraction of distractors farther from the
    /// image than the true subject (ties count half). 1 when the truth is the nearest; 0.5 on
    /// average by chance; partial likeness (the right colours, say) lands in between where the
    /// top-1 score sees nothing.
    public static func identityRank(_ distances: [Float]) -> Double {
        guard distances.count > 1 else { return 1 }
        let truth = distances[0]
        let score = distances.dropFirst().reduce(0.0) { $0 + ($1 > truth ? 1 : $1 == truth ? 0.5 : 0) }
        return score / Double(distances.count - 1)
    }

    /// Per aspect, whether the prompted value is recognized (aspects of subject `index`).
    public static func promptHits(_ image: RGBImage, scene: SceneSpec, subject index: Int = 0) -> [PromptAspect: Bool] {
        var hits: [PromptAspect: Bool] = [:]
        for aspect in PromptAspect.allCases {
            let (candidates, truth) = variants(of: scene, aspect: aspect, subject: index)
            hits[aspect] = nearest(image, among: candidates) == truth
        }
        return hits
    }

    /// The scene with every value of `aspect`, and the index of the prompted one.
    static func variants(of scene: SceneSpec, aspect: PromptAspect, subject i: Int) -> ([SceneSpec], Int) {
        func vary<T: Equatable>(_ values: [T], _ current: T, _ set: (inout SceneSpec, T) -> Void) -> ([SceneSpec], Int) {
            (values.map { v in var s = scene; set(&s, v); return s }, values.firstIndex(of: current)!)
        }
        let p = scene.subjects[i].placement
        switch aspect {
        case .background: return vary(Background.allCases, scene.background) { $0.background = $1 }
        case .style: return vary(Style.allCases, scene.style) { $0.style = $1 }
        case .position: return vary(Position.allCases, p.position) { $0.subjects[i].placement.position = $1 }
        case .size:
            // In a near framing the framing is what sets the subject's size.
            if scene.framing != .scene { return vary(Framing.near, scene.framing) { $0.framing = $1 } }
            return vary(SubjectSize.allCases, p.size) { $0.subjects[i].placement.size = $1 }
        case .accessory: return vary(Accessory.allCases, p.accessory) { $0.subjects[i].placement.accessory = $1 }
        }
    }

    /// Chance level of each prompt aspect (1 / values), in `PromptAspect` order. In a near
    /// framing the size aspect asks which near framing an image shows.
    public static func aspectChance(framing: Framing = .scene) -> [Double] {
        PromptAspect.allCases.map { aspect in
            switch aspect {
            case .background: return 1 / Double(Background.allCases.count)
            case .position: return 1 / Double(Position.allCases.count)
            case .size: return 1 / Double(framing == .scene ? SubjectSize.allCases.count : Framing.near.count)
            case .style: return 1 / Double(Style.allCases.count)
            case .accessory: return 1 / Double(Accessory.allCases.count)
            }
        }
    }

    /// Chance level of the prompt score (mean over aspects of 1 / values).
    public static func promptChance(framing: Framing = .scene) -> Double {
        let chances = aspectChance(framing: framing)
        return chances.reduce(0, +) / Double(chances.count)
    }

    /// The wide shot's chance level of the prompt score.
    public static var promptChance: Double { promptChance(framing: .scene) }
}
