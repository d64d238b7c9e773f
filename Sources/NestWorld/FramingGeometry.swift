/// Where the camera puts a subject in the near framings (`Framing.portrait`,
/// `.halfBody`, `.closeUp`): a focus point of the subject (its head, its
/// chest, its feet) is pinned to a point of the frame at a fixed zoom, so the
/// subject is equally large in every scene of a framing whatever its
/// proportions. All lengths are in the 64-unit scene coordinates.
enum FramingGeometry {
    /// Scene units per subject unit (the wide shot's large subjects have 40).
    static func zoom(_ framing: Framing) -> Float {
        switch framing {
        case .scene: return 40
        case .portrait: return 100
        case .halfBody: return 70
        case .closeUp: return 50
        }
    }

    /// Where the focus lands: frame height of the focus, and how far `left`
    /// and `right` move it off the centre line.
    static func anchor(_ framing: Framing) -> (y: Float, shift: Float) {
        switch framing {
        case .scene, .closeUp: return (60, 7)
        case .portrait: return (30, 8)
        case .halfBody: return (36, 8)
        }
    }

    /// Two subjects share the frame side by side, each this much smaller,
    /// centred this far left and right of the middle.
    static let pairZoom: Float = 0.62
    static let pairOffset: Float = 16

    /// The subject point the framing pins: the head's centre for portraits,
    /// halfway from the body to the head for half-body shots, the feet below
    /// the body's middle for close-ups.
    static func focus(_ framing: Framing, of id: Identity) -> (u: Float, v: Float) {
        let head = headCenter(id)
        switch framing {
        case .portrait: return head
        case .halfBody: return (head.u * 0.5, 0.55)
        case .scene, .closeUp: return (id.domain == .critter ? -0.08 : 0, 0)
        }
    }

    /// The head's centre in subject units, as the painters place it.
    static func headCenter(_ id: Identity) -> (u: Float, v: Float) {
        switch id.domain {
        case .critter:
            let hr = 0.19 * id.headSize, rx = 0.34 * id.bodyWidth, ry = 0.2 * id.bodyHeight
            return (-0.05 + rx * 0.8, 0.34 + ry + hr * 0.55)
        case .bot:
            let top = 0.18 + 0.4 * id.bodyHeight
            return (0, top + 0.05 + 0.15 * id.headSize)
        }
    }

    /// The frame of one subject. `paired`: one of two subjects side by side,
    /// in the slot its position names (`center` takes the right one, as the
    /// companion then stands on the left).
    static func frame(_ framing: Framing, identity: Identity, placement: Placement, paired: Bool,
                      jitter: (dx: Float, scale: Float)) -> SubjectFrame {
        let (y, shift) = anchor(framing)
        var zoom = zoom(framing) * jitter.scale, x: Float = 32
        if paired {
            zoom *= pairZoom
            x += placement.position == .left ? -pairOffset : pairOffset
        } else {
            switch placement.position {
            case .left: x -= shift
            case .center: break
            case .right: x += shift
            }
        }
        let focus = focus(framing, of: identity)
        let anchorY = paired && framing != .closeUp ? y + (1 - pairZoom) * 16 : y
        return SubjectFrame(footX: x + jitter.dx - focus.u * zoom, groundY: anchorY + focus.v * zoom, scale: zoom)
    }
}
