import ArgumentParser
import Foundation
import NestTraining

/// Training commands.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train models on the engine.",
        subcommands: [TrainAdapter.self, TrainComponent<VAEComponent>.self, TrainComponent<UNetComponent>.self,
                       TrainComponent<CLIPComponent>.self, TrainComponent<ImageEncoderComponent>.self])
}

struct TrainAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapter",
        abstract: "Train a Nested Attention adapter on a frozen base model (see AdapterRunConfig for the config file).")

    @Option(help: "The run's JSON config.")
    var config: String

    @Flag(help: "Continue the run in the config's output folder from its checkpoint.")
    var resume = false

    @Option(help: "Train nothing: report, over this many batches of the data, the loss with the adapter (the checkpoint's, with --resume) and with the base model alone, and how far the adapter moves the prediction against the base model's error.")
    var measure: Int?

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        if let measure, measure <= 0 { throw ValidationError("--measure must be positive, got \(measure)") }
    }

    func run() throws {
        try engine.apply()
        let run: AdapterTrainingRun
        do { run = try AdapterTrainingRun(configFile: URL(fileURLWithPath: config), resume: resume, measuring: measure != nil) } catch {
            fail(String(describing: error))
        }
        if let measure {
            do {
                let m = try run.measureEffect(batches: measure)
                print(String(format: "%d batches: loss %.5f with the adapter, %.5f with another subject's reference, %.5f base model alone; prediction shift %.4f RMS against the base model's error %.4f RMS (%.1f%%)",
                             measure, m.loss, m.otherLoss, m.baseLoss, m.shift, m.baseError, 100 * m.shift / max(m.baseError, 1e-12)))
            } catch { fail(String(describing: error)) }
            return
        }
        for problem in run.manifest.problems { warn("\(run.manifest.url.lastPathComponent) \(problem)") }
        if let precision = run.precisionNote { note(precision) }
        note("training \(run.trainer.adapter.config.placeholderToken) on \(run.manifest.samples.count) samples, "
             + "\(formatCount(run.trainer.adapter.parameterCount)) adapter parameters"
             + (run.trainer.trainsUNet ? " and the UNet's \(formatCount(run.trainer.pipeline.base.unet.parameterCount))" : "")
             + ", from step \(run.trainer.state.step)")
        let total = run.config.training.totalSteps
        let bar = ProgressBar(total: total)
        do {
            try run.run { step, loss, rate in
                bar.update(step, suffix: String(format: "loss %.4f  %.2f samples/s", loss, rate))
            }
        } catch {
            bar.finish()
            fail(String(describing: error))
        }
        bar.finish()
        print("wrote \(run.output.appendingPathComponent("adapter.json").path)")
    }
}

protocol TrainedComponent { static var component: BaseTrainingRun.Component { get } }
enum VAEComponent: TrainedComponent { static let component = BaseTrainingRun.Component.vae }
enum UNetComponent: TrainedComponent { static let component = BaseTrainingRun.Component.unet }
enum CLIPComponent: TrainedComponent { static let component = BaseTrainingRun.Component.clip }
enum ImageEncoderComponent: TrainedComponent { static let component = BaseTrainingRun.Component.imageEncoder }

/// `nest train vae|unet`: one component of a diffusers folder, written back in the same layout.
struct TrainComponent<C: TrainedComponent>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: C.component.rawValue,
                             abstract: abstract)
    }

    static var abstract: String {
        switch C.component {
        case .vae: return "Train a VAE (reconstruction + KL) from a folder's vae/config.json."
        case .unet: return "Train a text-to-image UNet with the folder's frozen text encoder and VAE."
        case .clip: return "Train the folder's text and image encoders together (CLIP's contrastive loss)."
        case .imageEncoder: return "Train the folder's image encoder to tell subjects apart (each image against one of its references)."
        }
    }

    @Option(help: "The run's JSON config (see BaseRunConfig).")
    var config: String

    @Flag(help: "Continue the run in the config's output folder from its checkpoint.")
    var resume = false

    @OptionGroup var engine: EngineOptions

    func run() throws {
        try engine.apply()
        let run: BaseTrainingRun
        do { run = try BaseTrainingRun(component: C.component, configFile: URL(fileURLWithPath: config), resume: resume) } catch {
            fail(String(describing: error))
        }
        for problem in run.manifest.problems { warn("\(run.manifest.url.lastPathComponent) \(problem)") }
        if let precision = run.precisionNote { note(precision) }
        let bar = ProgressBar(total: run.config.steps ?? 1000)
        do {
            try run.run { step, loss, rate in bar.update(step, suffix: String(format: "loss %.4f  %.2f samples/s", loss, rate)) }
        } catch {
            bar.finish()
            fail(String(describing: error))
        }
        bar.finish()
        let written = switch C.component {
        case .clip: ["text_encoder", "image_encoder"]
        case .imageEncoder: ["image_encoder"]
        case .vae, .unet: [C.component.rawValue]
        }
        print("wrote " + written.map { run.output.appendingPathComponent($0).path }.joined(separator: ", "))
    }
}
