import NestEngine

/// A problem with an IP-Adapter file or with using it on a UNet, in one line.
public struct IPAdapterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What an original single-file IP-Adapter (`image_proj.*` + `ip_adapter.N.to_{k,v}_ip.weight`)
/// holds, read from tensor names and shapes the way diffusers' loader reads them
/// (`_convert_ip_adapter_image_proj_to_diffusers`, `_convert_ip_adapter_attn_to_diffusers`).
public struct IPAdapterLayout: Equatable, Sendable {
    public enum Projection: Equatable, Sendable {
        /// `ImageProjModel`: Linear(CLIP image_embeds → tokens·cross), split into tokens, LayerNorm.
        case plain(imageEmbedDim: Int, tokens: Int)
        /// IP-Adapter Plus: a resampler over the image encoder's penultimate hidden states.
        case plus(Resampler.Config)
    }

    /// One decoupled cross-attention: `ip_adapter.<number>.to_{k,v}_ip.weight`, each [width, crossAttentionDim].
    public struct Layer: Equatable, Sendable {
        public var number: Int
        public var width: Int
    }

    public var projection: Projection
    /// Width of the image tokens, which must be the UNet's cross-attention width.
    public var crossAttentionDim: Int
    /// Tokens per reference image.
    public var tokens: Int
    /// By ascending number (1, 3, 5, …).
    public var layers: [Layer]

    /// Reads the layout from tensor names and shapes; refuses layouts other than plain and Plus by name.
    public static func read(_ source: WeightSource) throws -> IPAdapterLayout {
        let names = source.tensorNames
        if let stray = names.first(where: { !$0.hasPrefix("image_proj.") && !$0.hasPrefix("ip_adapter.") }) {
            throw IPAdapterError("'\(stray)' is not an IP-Adapter tensor (expected image_proj.* and ip_adapter.*)")
        }
        let proj = Set(names.filter { $0.hasPrefix("image_proj.") }.map { String($0.dropFirst("image_proj.".count)) })
        guard !proj.isEmpty else { throw IPAdapterError("no image_proj.* tensors: not an IP-Adapter file") }
        func shape(_ key: String) throws -> [Int] {
            guard let s = source.shape(of: "image_proj." + key) else { throw IPAdapterError("image_proj.\(key) is missing") }
            return s
        }

        // Checked in diffusers' order, so a file is read as the same kind there and here.
        let projection: Projection, cross: Int, tokens: Int
        if proj.contains("proj.weight") {
            let w = try shape("proj.weight"), norm = try shape("norm.weight")
            guard w.count == 2, norm.count == 1, norm[0] > 0, w[0] % norm[0] == 0 else {
                throw IPAdapterError("image_proj.proj.weight \(w) does not split into tokens of image_proj.norm.weight's width \(norm)")
            }
            cross = norm[0]
            tokens = w[0] / cross
            projection = .plain(imageEmbedDim: w[1], tokens: tokens)
        } else if proj.contains("proj.3.weight") {
            throw IPAdapterError("IP-Adapter Full Face (image_proj.proj.0…3) is not supported")
        } else if proj.contains("perceiver_resampler.proj_in.weight") {
            throw IPAdapterError("IP-Adapter FaceID Plus (image_proj.perceiver_resampler.*) is not supported")
        } else if proj.contains("norm.weight") {
            throw IPAdapterError("IP-Adapter FaceID (image_proj.proj.0/proj.2 + norm) is not supported")
        } else if proj.contains("latents") {
            let config = try plusConfig(proj, shape)
            cross = config.outputDim
            tokens = config.queries
            projection = .plus(config)
        } else {
            throw IPAdapterError("unrecognized image_proj layout (\(proj.sorted().prefix(4).joined(separator: ", "))…)")
        }
        let layers = try attentionLayers(names, source, cross: cross)
        return IPAdapterLayout(projection: projection, crossAttentionDim: cross, tokens: tokens, layers: layers)
    }

    /// The resampler's shape as diffusers infers it: queries and width from `latents`,
    /// input width from `proj_in`, heads = to_q rows / 64. diffusers then fixes depth and
    /// the feed-forward ratio at 4; here they are counted (they agree for every file
    /// diffusers can load).
    static func plusConfig(_ proj: Set<String>, _ shape: (String) throws -> [Int]) throws -> Resampler.Config {
        let latents = try shape("latents"), projIn = try shape("proj_in.weight"), projOut = try shape("proj_out.weight")
        guard latents.count == 3, latents[0] == 1 else { throw IPAdapterError("image_proj.latents must be [1, queries, width], got \(latents)") }
        let (queries, width) = (latents[1], latents[2])
        let depth = Set(proj.compactMap { key -> Int? in
            key.hasPrefix("layers.") ? Int(key.split(separator: ".")[1]) : nil
        }).count
        guard depth > 0 else { throw IPAdapterError("image_proj.layers.* are missing") }
        let q = try shape("layers.0.0.to_q.weight"), up = try shape("layers.0.1.1.weight")
        guard q[0] % 64 == 0 else {
            throw IPAdapterError("image_proj.layers.0.0.to_q.weight has \(q[0]) rows: IP-Adapter Plus heads are 64 wide")
        }
        guard up[0] % width == 0 else {
            throw IPAdapterError("image_proj.layers.0.1.1.weight has \(up[0]) rows, not a multiple of the width \(width)")
        }
        return Resampler.Config(embeddingDim: projIn[1], width: width, outputDim: projOut[0], depth: depth,
                                heads: q[0] / 64, headDim: 64, queries: queries, ffMult: up[0] / width)
    }

    /// Every `ip_adapter.N` with both projections, equal shapes and the tokens' width as input.
    static func attentionLayers(_ names: [String], _ source: WeightSource, cross: Int) throws -> [Layer] {
        var numbers = Set<Int>()
        for name in names where name.hasPrefix("ip_adapter.") {
            let parts = name.split(separator: ".")
            guard parts.count == 4, let n = Int(parts[1]), parts[3] == "weight",
                  parts[2] == "to_k_ip" || parts[2] == "to_v_ip" else {
                throw IPAdapterError("'\(name)' is not an IP-Adapter projection (expected ip_adapter.N.to_k_ip.weight / to_v_ip.weight)")
            }
            numbers.insert(n)
        }
        guard !numbers.isEmpty else { throw IPAdapterError("no ip_adapter.N.to_k_ip.weight tensors: not an IP-Adapter file") }
        return try numbers.sorted().map { n in
            let k = "ip_adapter.\(n).to_k_ip.weight", v = "ip_adapter.\(n).to_v_ip.weight"
            guard let ks = source.shape(of: k) else { throw IPAdapterError("\(k) is missing") }
            guard let vs = source.shape(of: v) else { throw IPAdapterError("\(v) is missing") }
            guard ks.count == 2, ks == vs, ks[1] == cross else {
                throw IPAdapterError("\(k) \(ks) / to_v_ip \(vs) must both be [width, \(cross)] (the image tokens' width)")
            }
            return Layer(number: n, width: ks[0])
        }
    }

    /// diffusers' numbering of the decoupled cross-attentions: walking the attention
    /// processors in `attn_processors` order, every one whose path does not end in
    /// `attn1.processor` takes the next odd number, so the k-th cross-attention is
    /// `ip_adapter.(2k+1)` (attn1 under only_cross_attention gets none, as in diffusers).
    public static func keyNumbers(attentionPaths: [String]) -> [(path: String, number: Int)] {
        var next = 1
        return attentionPaths.compactMap { path in
            guard !path.hasSuffix("attn1.processor") else { return nil }
            defer { next += 2 }
            return (path, next)
        }
    }
}
