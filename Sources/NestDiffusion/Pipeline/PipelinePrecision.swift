import NestEngine

extension StableDiffusionPipeline {
    /// The modules whose weights a generation reads: UNet, VAE and text encoders.
    var weightModules: [Module] { [unet, vae] + prompts.encoders as [Module] }

    /// Holds every weight as float16, widened per call: half the memory.
    public func storeWeightsAsHalf() { for module in weightModules { module.storeWeightsAsHalf() } }

    /// Holds every weight as bfloat16, multiplied in bfloat16 where the CPU can.
    public func storeWeightsAsBFloat16() { for module in weightModules { module.storeWeightsAsBFloat16() } }
}
