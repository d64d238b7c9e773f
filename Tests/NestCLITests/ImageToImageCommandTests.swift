import Foundation
import NestEngine
import NestIO
import Testing

/// `nest generate --init-image/--strength`, `--sampler lcm` and `--timestep-spacing`
/// against the diffusers images of tools/make_img2img_fixtures.py.
@Suite struct ImageToImageCommandTests {
    static let fixtures = CLI.root.appendingPathComponent("Tests/NestDiffusionTests/Fixtures/img2img")
    let sd1 = CLI.fixtures.appendingPathComponent("sd1").path
    let sdxl = CLI.fixtures.appendingPathComponent("sdxl").path
    let initImage = fixtures.appendingPathComponent("init_32x32.png").path

    func expectDiffusersImage(_ path: String, _ name: String) throws {
        let image = try ImageFile.decode(path: path)
        let expected = try SafeTensorsFile(path: Self.fixtures.appendingPathComponent("images.safetensors").path).tensor(name)
        #expect(image.pixels.count == expected.count)
        var worst = 0
        for i in 0..<min(image.pixels.count, expected.count) { worst = max(worst, abs(Int(image.pixels[i]) - Int(expected.data[i]))) }
        #expect(worst <= 1, "\(name): the command's image differs from diffusers' by \(worst)/255")
    }

    @Test func imageToImageReproducesDiffusers() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("cat.png").path
        // Case i2i_euler_030: SD1, Euler, 10 steps at strength 0.3 (3 run), seed 51.
        let r = try CLI.run(["generate", "--model", sd1, "--prompt", "a photo of a cat", "--steps", "10", "--seed", "51",
                             "--scheduler", "euler", "--init-image", initImage, "--strength", "0.3", "--output", path])
        #expect(r.status == 0, "\(r.stderr)")
        try expectDiffusersImage(path, "i2i_euler_030")
        let text = try ImageFile.readPNGText(path: path).first { $0.key == "parameters" }?.value ?? ""
        #expect(text.contains("Denoising strength: 0.3"), "\(text)")
    }

    @Test func fewStepSamplersReproduceDiffusers() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let lcm = dir.appendingPathComponent("lcm.png").path
        let r = try CLI.run(["generate", "--model", sd1, "--prompt", "a photo of a cat", "--steps", "4", "--seed", "41",
                             "--sampler", "lcm", "--guidance", "1", "--output", lcm])
        #expect(r.status == 0, "\(r.stderr)")
        try expectDiffusersImage(lcm, "lcm_g1")
        let turbo = dir.appendingPathComponent("turbo.png").path
        let t = try CLI.run(["generate", "--model", sdxl, "--prompt", "a photo of a dog", "--steps", "2", "--seed", "44",
                             "--scheduler", "euler", "--timestep-spacing", "trailing", "--guidance", "0", "--output", turbo])
        #expect(t.status == 0, "\(t.stderr)")
        try expectDiffusersImage(turbo, "turbo_euler_trailing")
    }

    @Test(arguments: [
        (["--strength", "0.5"], "--init-image is missing: strength applies to image-to-image"),
        (["--init-image", "INIT", "--strength", "1.5"], "--strength must be between 0.0 and 1.0, got 1.5"),
        (["--init-image", "INIT", "--strength", "nan"], "--strength must be a finite number"),
        (["--init-image", "INIT", "--strength", "0.1"], "--strength 0.1 × 2 steps leaves no denoising step"),
        (["--init-image", "/nonexistent/init.png"], "--init-image"),
        (["--init-image", "INIT", "--width", "34"], "--width 34 is not a multiple of 4"),
        (["--sampler", "lcm", "--steps", "60"], "lcm: 60 inference steps, expected 1...50"),
        (["--timestep-spacing", "sideways"], "sideways"),
    ])
    func badInputFailsClearly(arguments: [String], message: String) throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.png").path
        let r = try CLI.run(["generate", "--model", sd1, "--prompt", "a cat", "--steps", "2", "--seed", "1", "--output", path]
                            + arguments.map { $0 == "INIT" ? initImage : $0 })
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path), "a failed run must leave no file")
    }
}
