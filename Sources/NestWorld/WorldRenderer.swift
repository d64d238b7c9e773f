import NestIO

/// One subject to draw and where.
public struct PlacedSubject: Sendable {
    public var identity: Identity
    public var placement: Placement
    /// Extra horizontal shift in pixels (companions stand nearer the frame
    /// edge so a large subject in the centre hides less of them).
    public var nudge: Float
    /// False: the subject takes its place in the frame but is not drawn (a
    /// scene without it, everything else where it was).
    public var visible: Bool
    public init(_ identity: Identity, _ placement: Placement, nudge: Float = 0, visible: Bool = true) {
        self.identity = identity; self.placement = placement; self.nudge = nudge; self.visible = visible
    }
}

/// Renders miniature-world scenes: deterministic for the same inputs, 4×4
/// supersampled. Scenes are laid out in 64 units across; `side` sets the
/// image's pixels (64, 96, 128: the same scene drawn finer).
public enum WorldRenderer {
    /// The default image side, in pixels (one pixel per scene unit).
    public static let side = 64
    public static let supersampling = 4

    /// Checks an image side: a multiple of 16 (the metrics' 16×16 features
    /// and the autoencoder's downsampling need it) from 32 to 256.
    public static func checkSide(_ side: Int) throws {
        guard (32...256).contains(side), side % 16 == 0 else {
            throw WorldError("image side \(side) is not supported; use a multiple of 16 from 32 to 256, e.g. 64, 96 or 128")
        }
    }

    /// Draws `subjects` in order (later ones in front) over `background`,
    /// then applies `style`. `seed` moves background props and jitters each
    /// subject by up to about a scene unit and a half. `framing` places the
    /// subjects (`scene`: by their placements' sizes; otherwise large,
    /// side by side when there are two).
    /// `supersampling` below the default only for measuring (the metrics'
    /// 16×16 features average 4×4 pixels anyway); 2 keeps the sketch pass's
    /// half-pixel edge probe and hatching duty the same.
    public static func render(subjects: [PlacedSubject], background: Background, style: Style,
                              seed: UInt64, supersampling: Int = supersampling, framing: Framing = .scene,
                              side: Int = side) -> RGBImage {
        var canvas = Canvas(width: side, height: side, factor: supersampling,
                            pixelsPerUnit: Float(side) / Float(Self.side))
        BackgroundPainter.paint(background, seed: seed, on: &canvas)
        var jitter = WorldRandom(seed: seed, stream: "placement")
        for subject in subjects {
            let shake = (dx: jitter.uniform(-1.5, 1.5), scale: jitter.uniform(0.97, 1.03))
            var frame: SubjectFrame
            if framing == .scene {
                frame = self.frame(for: subject.placement, jitter: shake)
                frame.footX += subject.nudge
            } else {
                frame = FramingGeometry.frame(framing, identity: subject.identity, placement: subject.placement,
                                              paired: subjects.count > 1, jitter: shake)
            }
            guard subject.visible else { continue }
            let anatomy: Anatomy
            switch subject.identity.domain {
            case .critter: anatomy = CritterPainter.paint(subject.identity, in: frame, on: &canvas)
            case .bot: anatomy = BotPainter.paint(subject.identity, in: frame, on: &canvas)
            }
            AccessoryPainter.paint(subject.placement.accessory, on: anatomy, in: frame, canvas: &canvas)
        }
        StylePass.apply(style, to: &canvas)
        return canvas.image()
    }

    /// The usual case: one identity in a context, plus the context's companion
    /// (an individual of the other domain drawn from `seed`, on the other side).
    public static func render(identity: Identity, context: Context, seed: UInt64, side: Int = side) -> RGBImage {
        render(subjects: subjects(identity: identity, context: context, seed: seed),
               background: context.background, style: context.style, seed: seed, framing: context.framing, side: side)
    }

    /// The subjects of a scene; `companion` overrides the companion drawn from `seed`.
    public static func subjects(identity: Identity, context: Context, seed: UInt64, companion: Identity? = nil) -> [PlacedSubject] {
        var list = [PlacedSubject(identity, context.placement)]
        if context.companion {
            let other = companion ?? Identity.random(domain: identity.domain.other, seed: seed ^ 0x5eed_c0de)
            let side: Position = context.position == .left ? .right : .left
            list.insert(PlacedSubject(other, Placement(position: side, size: .small), nudge: side == .left ? -6 : 6), at: 0)
        }
        return list
    }

    static func frame(for placement: Placement, jitter: (dx: Float, scale: Float)) -> SubjectFrame {
        let large = placement.size == .large
        let spread: Float = large ? 13 : 17
        let x: Float
        switch placement.position {
        case .left: x = 32 - spread
        case .center: x = 32
        case .right: x = 32 + spread
        }
        return SubjectFrame(footX: x + jitter.dx, groundY: large ? 58 : 53,
                            scale: (large ? 40 : 21) * jitter.scale)
    }
}

extension WorldRenderer {
    /// Explicit subjects in a context's background, style and framing (the context's
    /// own position, size, accessory and companion are not used here).
    public static func render(subjects: [(Identity, Placement)], context: Context, seed: UInt64) -> RGBImage {
        render(subjects: subjects.map { PlacedSubject($0.0, $0.1) }, background: context.background,
               style: context.style, seed: seed, framing: context.framing)
    }
}
