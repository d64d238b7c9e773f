import Foundation
import NestEngine
import NestModels

/// Decode time and peak memory of a Stable Diffusion–sized VAE decoder
/// (block_out_channels [128, 256, 512, 512], 2 layers per block, 32 groups;
/// random weights, so no files are needed): 64×64 latents → one 512×512 image.
func vaeDecodeBench(repeats: Int) {
    let config = AutoencoderKLConfig(blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, normNumGroups: 32)
    let vae = try! AutoencoderKL(config: config)
    let latents = Tensor.randn([1, 64, 64, 4], seed: 11)
    let t = best(repeats) { _ = vae.decode(latents) }
    let (result, peak) = MemoryStats.measurePeak { vae.decode(latents) }
    let weights = Double(vae.decoder.parameterCount + (vae.post_quant_conv?.parameterCount ?? 0)) * 4 / 1048576
    print(String(format: "%-44@ %9.2f ms   peak %.0f MiB beyond %.0f MiB of decoder weights; output %@",
                 "vae decode 64×64×4 → 512×512×3" as NSString, t * 1e3, Double(peak) / 1048576, weights,
                 "\(result.shape)" as NSString))
}
