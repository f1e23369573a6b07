"""The prompt codec shared by origin and players: generative model, inversion, decoding, wire format."""
