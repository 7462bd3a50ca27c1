"""Multilingual LoRA adapters with language-ID routing for ESPnet's Whisper and OWSM models."""
