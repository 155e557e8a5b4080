"""Model adapter and reference models."""
