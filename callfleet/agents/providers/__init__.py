"""Speech and language providers behind small interfaces (see ``base``): offline
defaults (Silero VAD, faster-whisper, Piper, the scripted dialogue engine) and hosted
services (OpenAI-compatible, Deepgram, Cartesia)."""
