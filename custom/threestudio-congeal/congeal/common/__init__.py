"""Foundations every stage uses: InputError, the atomic writer, device resolution, version parsing."""
