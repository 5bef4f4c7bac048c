"""Photos in: decoding any image file, masks, object crops, and the one photo-collection loader."""
