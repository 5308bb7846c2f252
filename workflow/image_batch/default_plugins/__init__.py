"""Image.Batch's own providers, registered through the same hook a third-party plugin uses."""
