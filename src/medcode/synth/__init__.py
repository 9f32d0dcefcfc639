"""Synthetic clinical notes: catalog, profiles, encounter sampling, rendering and writing."""
