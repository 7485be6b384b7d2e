"""prmkit: process supervision for language-model math reasoning."""

__version__ = "0.1.0"
