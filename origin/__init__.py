"""Content preparation (pixel ladders with PyAV, prompt representations) and the aiohttp origin."""
