"""The headless player: feed and swipe model, downloader, decode pipeline, playback clock,
schedulers."""
