/// The size of the world's UNet: channels per level and ResNet layers per block.
/// The world's own is 64/128/192 with one layer (8.8 M parameters, what two CPU cores
/// train in hours); a larger one is for an accelerator (the PyTorch recipe's UNet stage).
public struct WorldUNetShape: Equatable, Sendable {
    public var channels: [Int]
    public var layersPerBlock: Int

    public static let standard = WorldUNetShape(channels: [64, 128, 192], layersPerBlock: 1)
    /// The group norm's groups (every width must divide into them) and the attention heads.
    public static let groups = 32, heads = 4

    public init(channels: [Int], layersPerBlock: Int) {
        self.channels = channels; self.layersPerBlock = layersPerBlock
    }

    /// `--unet-channels A,B,C` and `--unet-layers N`, checked: one line naming what is wrong.
    public init(channels text: String, layersPerBlock: Int) throws {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        let widths = parts.compactMap { $0 }
        guard parts.count == 3, widths.count == 3 else {
            throw WorldError("--unet-channels: three whole widths, comma-separated (the UNet's three levels), got '\(text)'")
        }
        if let bad = widths.first(where: { $0 < Self.groups || $0 > 4096 || $0 % Self.groups != 0 }) {
            throw WorldError("--unet-channels: each width a multiple of \(Self.groups) (the group norm's groups) from \(Self.groups) to 4096, got \(bad)")
        }
        guard (1...8).contains(layersPerBlock) else {
            throw WorldError("--unet-layers: between 1 and 8 ResNet layers per block, got \(layersPerBlock)")
        }
        self.init(channels: widths, layersPerBlock: layersPerBlock)
    }
}
