"""f5-batch: batch text-to-speech with F5-TTS."""

__version__ = "0.1.0"
