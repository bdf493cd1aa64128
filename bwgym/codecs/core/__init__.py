"""What every codec shares: the protocol and payloads, the registry, entropy coding, the latent pipeline and DPCA."""
